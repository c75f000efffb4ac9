"""Object storage for blocks: one fsspec-backed store for local disk, memory, S3, GCS and Azure."""
