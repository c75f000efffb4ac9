# The Jaeger agent's UDP interface (jaeger-idl `agent.thrift`): clients send one one-way `emitBatch`
# message per datagram, compact protocol on port 6831, binary protocol on 6832. The legacy
# `emitZipkinBatch` call is not accepted by tempo-lite, so its Zipkin types are not declared here.

include "jaeger.thrift"

service Agent {
  oneway void emitBatch(1: jaeger.Batch batch)
}
