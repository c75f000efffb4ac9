"""Blocks: immutable per-tenant Parquet span tables on object storage (docs/block-format.md).

```
<tenant>/<block-id>/data.parquet       span rows sorted by trace ID then start time
<tenant>/<block-id>/resources.parquet  one row per (resource, instrumentation scope)
<tenant>/<block-id>/traces.parquet     one row per trace: ID, start, end, span count, root
<tenant>/<block-id>/bloom              trace-ID bloom filter
<tenant>/<block-id>/meta.json          written last: the block exists once this exists
```

This package owns the format; nothing outside it builds a block path or opens a block file:
`paths` (the layout), `meta` (meta.json), `versions` (format versions: `tl1` read, `tl2` written),
`writer` (`encode_block`, `write_block`), `reader` (`open_block` -> `BlockReader`, with `footer`,
`traceindex` and `bloom`), `blocklist` (the visible blocks per tenant, polled from the store).
"""
