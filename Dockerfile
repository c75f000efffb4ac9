# tempo-lite: one process, embedded WAL, blocks on local disk (or S3/GCS/Azure by configuration).
#   docker build -t tempo-lite .
#   docker run -p 3200:3200 -p 4317:4317 -p 4318:4318 -v tempo-data:/var/tempo tempo-lite
# The image also carries Redpanda, for the managed Redpanda WAL (tempo-lite starts and supervises
# the broker itself, data under /var/tempo/wal/broker; docs/wal.md):
#   docker run -p 3200:3200 -p 4317:4317 -p 4318:4318 -v tempo-data:/var/tempo tempo-lite \
#     serve --config /etc/tempo-lite/redpanda.yaml
ARG REDPANDA_IMAGE=docker.redpanda.com/redpandadata/redpanda:v24.2.7

# Redpanda's official image: /opt/redpanda holds the broker with its own loader and libraries
# (bin/redpanda is a wrapper that runs libexec/redpanda through lib/ld.so), so it runs on any glibc base.
FROM ${REDPANDA_IMAGE} AS redpanda

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tempo_lite ./tempo_lite
RUN pip install --no-cache-dir --prefix=/install '.[s3,gcs,azure,kafka]'

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY --from=redpanda /opt/redpanda /opt/redpanda
ENV PATH=/opt/redpanda/bin:$PATH
COPY config/docker.yaml /etc/tempo-lite/tempo.yaml
COPY config/docker-redpanda.yaml /etc/tempo-lite/redpanda.yaml
RUN useradd --system --home /var/tempo tempo && mkdir -p /var/tempo && chown tempo /var/tempo
USER tempo
WORKDIR /var/tempo
VOLUME /var/tempo
# query API, OTLP gRPC, OTLP HTTP, Zipkin, Jaeger Thrift HTTP
EXPOSE 3200 4317 4318 9411 14268
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:3200/ready').status != 200)"
ENTRYPOINT ["tempo-lite"]
CMD ["serve", "--config", "/etc/tempo-lite/tempo.yaml"]
