"""The block format versions, by the name `meta.json` carries in `format` (as Tempo's vparquet4/vparquet5).

Every version here is read; new blocks are written in `meta.FORMAT_VERSION`. A version is the set of
layout choices the writer makes and the reader must know (docs/block-format.md):

- `tl1`: data.parquet holds every span column, `trace_id` included.
- `tl2`: data.parquet leaves `trace_id` out. Rows are sorted by trace ID, and traces.parquet holds each
  trace's ID and span count in the same order, so the reader rebuilds the column from it (and finds a
  trace's rows from it: `block.traceindex`). Saves the dictionary page of random 16-byte IDs in every
  row group (~2.4 bytes per span).

To add a version: add its name to `meta.FORMATS`, describe it here, teach the writer and reader its
differences, and keep reading the older ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_lite.block.meta import FORMATS


class UnsupportedFormat(ValueError):
    """A block's `format` names no version this tempo-lite reads."""


@dataclass(frozen=True)
class BlockVersion:
    name: str
    # data.parquet has a `trace_id` column (else it is rebuilt from traces.parquet).
    trace_id_in_data: bool


VERSIONS: dict[str, BlockVersion] = {
    "tl1": BlockVersion("tl1", trace_id_in_data=True),
    "tl2": BlockVersion("tl2", trace_id_in_data=False),
}
assert tuple(VERSIONS) == FORMATS, "every format meta.json may name needs a version here, and only those"


def version(name: str) -> BlockVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise UnsupportedFormat(f"unsupported block format {name!r} (this tempo-lite reads {', '.join(VERSIONS)})") \
            from None
