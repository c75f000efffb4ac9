"""Where blocks live in an object store: the one module that builds block paths.

```
<tenant>/                                 one folder per tenant (`tenants`: list the store's root)
<tenant>/<block-id>/                      one folder per block (`block_dir`)
<tenant>/<block-id>/data.parquet          span rows
<tenant>/<block-id>/resources.parquet     resources and scopes
<tenant>/<block-id>/traces.parquet        one row per trace
<tenant>/<block-id>/bloom                 trace-ID bloom filter
<tenant>/<block-id>/values.parquet        distinct tag values per attribute key (blocks with `value_catalogue`)
<tenant>/<block-id>/meta.json             written last: the block exists once this exists
<tenant>/<block-id>/meta.compacted.json   replaces meta.json when the block is compacted or expired
```
"""

from __future__ import annotations

META = "meta.json"
COMPACTED_META = "meta.compacted.json"
DATA = "data.parquet"
RESOURCES = "resources.parquet"
TRACES = "traces.parquet"
BLOOM = "bloom"
VALUES = "values.parquet"

# The store's root, listed for tenants.
ROOT = ""


def tenant_dir(tenant: str) -> str:
    """The folder holding a tenant's blocks (list it for block IDs)."""
    return tenant


def block_dir(tenant: str, block_id: str) -> str:
    """The folder of one block (delete it to delete the block)."""
    return f"{tenant}/{block_id}"


def block_file(tenant: str, block_id: str, name: str) -> str:
    """One file of a block: `name` is META, COMPACTED_META, DATA, RESOURCES, TRACES, BLOOM or VALUES."""
    return f"{tenant}/{block_id}/{name}"
