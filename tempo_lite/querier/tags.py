"""Tag names and tag values (Grafana's autocomplete): per source, merged, and as tempopb messages.

Each discovery function returns plain Python values for one source (live-store table or block) with a
`merge_*` function to combine sources, and a `*_response` function that builds the protobuf message.
Field rules follow Tempo's `/api/search/tags`, `/api/v2/search/tags` and `.../tag/<tag>/values`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import Attribute, Scope, SpansetFilter
from tempo_lite.traceql.tag_names import ATTRIBUTE_SCOPES, tag_names
from tempo_lite.traceql.tag_values import (
    constant_tag_values,
    tag_value_bytes,
    tag_values_v2,
    typed_value,
    typed_values,
)

# /api/v2/search/tags intrinsic scope (pkg/search/util.go GetVirtualIntrinsicValues, Tempo 3.0).
INTRINSIC_TAGS = [
    "duration",
    "name",
    "status",
    "statusMessage",
    "kind",
    "rootServiceName",
    "rootName",
    "traceDuration",
    "event:name",
    "event:timeSinceStart",
    "link:spanID",
    "link:traceID",
    "instrumentation:name",
    "instrumentation:version",
    "trace:id",
    "span:id",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "span:duration",
    "span:name",
    "span:kind",
    "trace:rootName",
    "trace:rootService",
    "trace:duration",
]

def merge_tag_names(*sources: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {s: set() for s in ATTRIBUTE_SCOPES}
    for src in sources:
        for scope, names in src.items():
            out.setdefault(scope, set()).update(names)
    return out


def _check_scope(scope: str) -> str:
    if scope not in ("", "none", "intrinsic", *ATTRIBUTE_SCOPES):
        raise ValueError(f"invalid scope: {scope}")
    return scope


def search_tags_response(names: Mapping[str, set[str]], scope: str = "", limit: int = 0) -> pb.SearchTagsResponse:
    """v1: sorted, de-duplicated names without scope; intrinsics only for scope=intrinsic."""
    scope = _check_scope(scope)
    if scope == "intrinsic":
        tags = sorted(INTRINSIC_TAGS)
    elif scope in ("", "none"):
        tags = sorted(set().union(*names.values())) if names else []
    else:
        tags = sorted(names.get(scope, set()))
    return pb.SearchTagsResponse(tagNames=tags[:limit] if limit else tags)


def search_tags_v2_response(names: Mapping[str, set[str]], scope: str = "", limit: int = 0) -> pb.SearchTagsV2Response:
    """v2: one entry per scope with sorted tags; the intrinsic scope for scope "", none or intrinsic."""
    scope = _check_scope(scope)
    resp = pb.SearchTagsV2Response()
    wanted = ATTRIBUTE_SCOPES if scope in ("", "none") else ((scope,) if scope != "intrinsic" else ())
    for s in wanted:
        tags = sorted(names.get(s, set()))
        if tags:
            resp.scopes.add(name=s, tags=tags[:limit] if limit else tags)
    if scope in ("", "none", "intrinsic"):
        resp.scopes.add(name="intrinsic", tags=INTRINSIC_TAGS[:limit] if limit else INTRINSIC_TAGS)
    return resp


# --------------------------------------------------------------------------------------------------
# Tag values

V1_VIRTUAL_VALUES = {"status.code": ["unset", "ok", "error"], "error": ["true"]}


def tag_values_v1(table: SpanTable, tag: str, q: SpansetFilter | None = None) -> set[str]:
    """v1 values of a raw attribute name, looked up on spans and resources, as strings."""
    if tag in V1_VIRTUAL_VALUES:
        return set(V1_VIRTUAL_VALUES[tag])
    return {v for _, v in tag_values_v2(table, Attribute(tag, Scope.NONE), q)}


def merge_tag_values(*sources: Iterable) -> set:
    out: set = set()
    for src in sources:
        out.update(src)
    return out


# --------------------------------------------------------------------------------------------------
# Tag-values answers, column-wise

VALUES_SCHEMA = pa.schema([("type", pa.string()), ("value", pa.string())])


def values_table(values: Iterable[tuple[str, str]]) -> pa.Table:
    """(type, value) pairs as a two-column table."""
    pairs = list(values)
    types = [t for t, _ in pairs]
    return pa.table([pa.array(types, pa.string()), pa.array([v for _, v in pairs], pa.string())],
                    schema=VALUES_SCHEMA)


def distinct_values(parts: Iterable[pa.Table]) -> pa.Table:
    """The distinct (type, value) rows of several tables."""
    tables = [p for p in parts if p.num_rows]
    if not tables:
        return VALUES_SCHEMA.empty_table()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    types = pc.unique(table.column("type"))
    if len(types) == 1:  # the usual case (one type): a hash pass over the values alone
        values = pc.unique(table.column("value"))
        return pa.table([pa.array([types[0].as_py()] * len(values), pa.string()), values], schema=VALUES_SCHEMA)
    return table.group_by(["type", "value"], use_threads=False).aggregate([]).select(["type", "value"])


def _prefix_within(sizes: np.ndarray, max_bytes: int) -> int:
    """How many values Tempo's collector keeps: it stops at the first whose size would bring the total to
    `max_bytes` or more (`collector.DistinctValue`); 0 means no limit."""
    if max_bytes <= 0 or not len(sizes):
        return len(sizes)
    return int(np.searchsorted(np.cumsum(sizes), max_bytes, side="left"))


def _byte_lengths(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.binary_length(col).to_numpy(zero_copy_only=False), dtype=np.int64)


def _json_insides(values: list[str]) -> list[str]:
    """Each string JSON-encoded without its quotes, from one `json.dumps` of the list: inside an encoded
    string every quote is escaped, so `","` only ever separates two of them."""
    if not values:
        return []
    return json.dumps(values, separators=(",", ":"))[2:-2].split('","')


@dataclass
class TagValuesAnswer:
    """A tag-values answer, sorted, limited (count and bytes) and rendered without a message per value:
    `types` is None for v1 (strings only)."""

    values: list[str]
    types: list[str] | None
    metrics: pb.MetadataMetrics = field(default_factory=pb.MetadataMetrics)

    @classmethod
    def v2(cls, table: pa.Table, *, limit: int = 0, max_bytes: int = 0) -> TagValuesAnswer:
        if table.num_rows:
            table = table.take(pc.sort_indices(table, [("type", "ascending"), ("value", "ascending")]))
            sizes = _byte_lengths(table.column("type")) + _byte_lengths(table.column("value"))
            n = _prefix_within(sizes, max_bytes)
            table = table.slice(0, min(n, limit) if limit else n)
        return cls(table.column("value").to_pylist(), table.column("type").to_pylist())

    @classmethod
    def v1(cls, values: pa.Array | pa.ChunkedArray, *, limit: int = 0, max_bytes: int = 0) -> TagValuesAnswer:
        values = pc.unique(values)
        values = values.take(pc.sort_indices(values))
        n = _prefix_within(_byte_lengths(values), max_bytes)
        return cls(values.slice(0, min(n, limit) if limit else n).to_pylist(), None)

    def message(self) -> pb.SearchTagValuesResponse | pb.SearchTagValuesV2Response:
        if self.types is None:
            return pb.SearchTagValuesResponse(tagValues=self.values, metrics=self.metrics)
        return pb.SearchTagValuesV2Response(
            tagValues=[pb.TagValue(type=t, value=v) for t, v in zip(self.types, self.values, strict=True)],
            metrics=self.metrics,
        )

    def json(self) -> bytes:
        """The message's JSON, byte for byte as `json.dumps(json_format.MessageToDict(...))` writes it (empty
        strings left out), with one `json.dumps` call for all values instead of a message per value."""
        metrics = json.dumps(json_format.MessageToDict(self.metrics), separators=(",", ":"))
        if self.types is None:
            body = json.dumps(self.values, separators=(",", ":"))
        else:
            inside = _json_insides(self.values)
            kinds = set(self.types)
            if len(kinds) == 1 and "" not in kinds and "" not in self.values:
                head = f'{{"type":{json.dumps(self.types[0])},"value":"'
                body = f'[{head}{(chr(34) + "},"  + head).join(inside)}"}}]'
            else:
                types = {t: f'"type":{json.dumps(t)}' for t in kinds}
                parts = [
                    "{" + ",".join(x for x in (types[t] if t else "", f'"value":"{e}"' if v else "") if x) + "}"
                    for t, v, e in zip(self.types, self.values, inside, strict=True)
                ]
                body = f"[{','.join(parts)}]"
        doc = f'"tagValues":{body},' if self.values else ""
        return f'{{{doc}"metrics":{metrics}}}'.encode()

    def protobuf(self) -> bytes:
        return self.message().SerializeToString()


def tag_values_response(values: Iterable[str], limit: int = 0) -> pb.SearchTagValuesResponse:
    ordered = sorted(values)
    return pb.SearchTagValuesResponse(tagValues=ordered[:limit] if limit else ordered)


def tag_values_v2_response(values: Iterable[tuple[str, str]], limit: int = 0) -> pb.SearchTagValuesV2Response:
    ordered = sorted(values)
    if limit:
        ordered = ordered[:limit]
    return pb.SearchTagValuesV2Response(tagValues=[pb.TagValue(type=t, value=v) for t, v in ordered])


__all__ = [
    "ATTRIBUTE_SCOPES",
    "INTRINSIC_TAGS",
    "V1_VIRTUAL_VALUES",
    "VALUES_SCHEMA",
    "TagValuesAnswer",
    "constant_tag_values",
    "distinct_values",
    "merge_tag_names",
    "merge_tag_values",
    "search_tags_response",
    "search_tags_v2_response",
    "tag_names",
    "tag_value_bytes",
    "tag_values_response",
    "tag_values_v1",
    "tag_values_v2",
    "tag_values_v2_response",
    "typed_value",
    "typed_values",
    "values_table",
]
