# Wire schema of Jaeger's Thrift span batch (the `jaeger.thrift` contract of jaeger-idl), written out
# for tempo-lite: field ids and types must match what Jaeger clients and agents send, names are ours to
# read. Parsed at import time by thriftpy2 (tempo_lite/receivers/jaeger.py).

enum TagType { STRING, DOUBLE, BOOL, LONG, BINARY }

struct Tag {
  1: required string  key
  2: required TagType vType
  3: optional string  vStr
  4: optional double  vDouble
  5: optional bool    vBool
  6: optional i64     vLong
  7: optional binary  vBinary
}

struct Log {
  1: required i64       timestamp   # epoch microseconds
  2: required list<Tag> fields
}

enum SpanRefType { CHILD_OF, FOLLOWS_FROM }

struct SpanRef {
  1: required SpanRefType refType
  2: required i64         traceIdLow
  3: required i64         traceIdHigh
  4: required i64         spanId
}

struct Span {
  1:  required i64           traceIdLow
  2:  required i64           traceIdHigh   # 0 for 64-bit trace ids
  3:  required i64           spanId
  4:  required i64           parentSpanId  # 0 for a root span
  5:  required string        operationName
  6:  optional list<SpanRef> references
  7:  required i32           flags         # 1 = sampled, 2 = debug
  8:  required i64           startTime     # epoch microseconds
  9:  required i64           duration      # microseconds
  10: optional list<Tag>     tags
  11: optional list<Log>     logs
  12: optional bool          incomplete
}

struct Process {
  1: required string    serviceName
  2: optional list<Tag> tags
}

struct Batch {
  1: required Process    process
  2: required list<Span> spans
}

struct BatchSubmitResponse {
  1: required bool ok
}

service Collector {
  list<BatchSubmitResponse> submitBatches(1: list<Batch> batches)
}
