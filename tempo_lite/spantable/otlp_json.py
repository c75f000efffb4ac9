"""OTLP attribute values as proto3 JSON (pure): the one attribute/value encoder of the JSON answers.

Exactly what `json_format.MessageToDict` writes for an `AnyValue` / `KeyValue` (64-bit integers as
strings, non-finite doubles by name, default values left out), by direct field access: the generic
converter reflects over every field and dominated answers with thousands of spans. Trace-by-ID JSON
(`querier/trace_json.py`) and search JSON (`querier/search_json.py`) both use it. Works on OTLP's and
tempopb's `AnyValue`/`KeyValue` alike (the same fields).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format


def any_value_json(v: Any) -> dict:  # noqa: ANN401 - an OTLP or tempopb AnyValue
    kind = v.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "string_value":
        return {"stringValue": v.string_value}
    if kind == "bool_value":
        return {"boolValue": v.bool_value}
    if kind == "int_value":
        return {"intValue": str(v.int_value)}
    if kind == "double_value":
        d = v.double_value
        return {"doubleValue": d if math.isfinite(d) else ("NaN" if d != d else ("Infinity" if d > 0 else "-Infinity"))}
    if kind == "array_value":
        values = [any_value_json(x) for x in v.array_value.values]
        return {"arrayValue": {"values": values} if values else {}}
    return json_format.MessageToDict(v)  # kvlist and bytes: rare in traces, never in search; kept exact


def key_values_json(kvs: Iterable[Any]) -> list[dict]:
    """A repeated `KeyValue` field as its JSON list."""
    out = []
    for kv in kvs:
        item: dict = {}
        if kv.key:
            item["key"] = kv.key
        if kv.HasField("value"):
            item["value"] = any_value_json(kv.value)
        out.append(item)
    return out
