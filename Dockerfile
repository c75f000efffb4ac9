# tempo-lite: one process, embedded WAL, blocks on local disk (or S3/GCS/Azure by configuration).
#   docker build -t tempo-lite .
#   docker run -p 3200:3200 -p 4317:4317 -p 4318:4318 -v tempo-data:/var/tempo tempo-lite
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tempo_lite ./tempo_lite
RUN pip install --no-cache-dir --prefix=/install '.[s3,gcs,azure,kafka]'

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY config/docker.yaml /etc/tempo-lite/tempo.yaml
RUN useradd --system --home /var/tempo tempo && mkdir -p /var/tempo && chown tempo /var/tempo
USER tempo
WORKDIR /var/tempo
VOLUME /var/tempo
# query API, OTLP gRPC, OTLP HTTP, Zipkin, Jaeger Thrift HTTP
EXPOSE 3200 4317 4318 9411 14268
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:3200/ready').status != 200)"
ENTRYPOINT ["tempo-lite"]
CMD ["serve", "--config", "/etc/tempo-lite/tempo.yaml"]
