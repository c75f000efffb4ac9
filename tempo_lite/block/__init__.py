"""Blocks: immutable per-tenant Parquet span tables on object storage (format `tl1`, docs/block-format.md).

```
<tenant>/<block-id>/data.parquet       span rows sorted by trace ID then start time
<tenant>/<block-id>/resources.parquet  one row per (resource, instrumentation scope)
<tenant>/<block-id>/traces.parquet     one row per trace: ID, start, end, span count
<tenant>/<block-id>/bloom              trace-ID bloom filter
<tenant>/<block-id>/meta.json          written last: the block exists once this exists
```
"""
