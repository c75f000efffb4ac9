"""The query API: HTTP handlers, response encoding, gRPC plumbing."""
