"""Typed value columns for the TraceQL engine: one value per evaluation row, compared column-wise.

TraceQL values are dynamically typed (`.a = 1` is not `.a = "1"`), so a `Col` holds one Arrow array
per type *slot* (`str`, `int`, `float`, `bool`, `dur`, `status`, `kind`), each null where the row's
value has another type or is missing. Array attributes keep their elements in `Elements` (compared
element-wise, any/all per row); unscoped attributes keep the resource value as an alternative (`alts`),
so a comparison holds if it holds for the span value or the resource value.

All operations work on whole columns (pyarrow compute and numpy); nothing here loops over rows,
except decoding OTLP array attributes, which only happens for array-typed values of referenced keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tempo_lite.errors import TempoLiteError
from tempo_lite.spantable import ARRAY

NUMERIC = ("int", "float", "dur")
SLOT_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "dur": pa.int64(),
    "status": pa.int8(),
    "kind": pa.int8(),
}
# One type slot of a column: an array with a value per row, or a scalar standing for every row.
Slot: TypeAlias = pa.Array | pa.Scalar
# A typed value for results: (type, value) with type in str/int/float/bool/dur/status/kind/array.
TypedValue: TypeAlias = tuple[str, object]


class EvaluationError(TempoLiteError):
    """A query failed at run time (integer division by zero): the search fails (HTTP 500)."""


@dataclass
class Elements:
    """Elements of array-valued rows: `parents[i]` is the row of element i; `has` marks array rows."""

    parents: np.ndarray
    slots: dict[str, pa.Array]
    has: np.ndarray


@dataclass
class Col:
    """`n` values, one per row, as typed slots; `alts` are alternative values (unscoped lookups)."""

    n: int
    slots: dict[str, Slot] = field(default_factory=dict)
    arr: Elements | None = None
    alts: list[Col] = field(default_factory=list)

    @staticmethod
    def literal(n: int, slot: str, value: object) -> Col:
        return Col(n, {slot: pa.scalar(value, SLOT_TYPES[slot])})

    @staticmethod
    def nil(n: int) -> Col:
        return Col(n)

    @staticmethod
    def boolean(values: pa.Array) -> Col:
        return Col(len(values), {"bool": values})

    def exists(self) -> np.ndarray:
        """Rows holding a value of any type (arrays included, alternatives included)."""
        out = np.zeros(self.n, dtype=bool)
        for v in self.slots.values():
            out |= _valid(v, self.n)
        if self.arr is not None:
            out |= self.arr.has
        for alt in self.alts:
            out |= alt.exists()
        return out

    def primary(self) -> Col:
        """The value without alternatives: own value where present, else the alternatives' (in order)."""
        if not self.alts:
            return self
        out = Col(self.n, dict(self.slots), self.arr)
        for alt in self.alts:
            alt = alt.primary()
            present = pa.array(out.exists_own())
            for name in set(out.slots) | set(alt.slots):
                mine = _broadcast_slot(out.slots.get(name), self.n, name)
                theirs = _broadcast_slot(alt.slots.get(name), self.n, name)
                out.slots[name] = pc.if_else(present, mine, theirs)
        return out

    def exists_own(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for v in self.slots.values():
            out |= _valid(v, self.n)
        if self.arr is not None:
            out |= self.arr.has
        return out

    def take(self, idx: np.ndarray) -> Col:
        """Values at rows `idx` (a new row set of len(idx); -1 gives a missing value)."""
        m = len(idx)
        missing = idx < 0
        indices = pa.array(np.where(missing, 0, idx), mask=missing if missing.any() else None)
        slots = {k: (v if isinstance(v, pa.Scalar) else v.take(indices)) for k, v in self.slots.items()}
        arr = None
        if self.arr is not None:
            arr = _take_elements(self.arr, idx, m)
        return Col(m, slots, arr, [a.take(idx) for a in self.alts])


def _valid(v: Slot, n: int) -> np.ndarray:
    if isinstance(v, pa.Scalar):
        return np.full(n, v.is_valid, dtype=bool)
    return _np_bool(pc.is_valid(v))


def _np_bool(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _broadcast_slot(v: Slot | None, n: int, name: str) -> pa.Array:
    """A slot as an array of length n (a scalar repeated; None gives nulls)."""
    if v is None or (isinstance(v, pa.Scalar) and not v.is_valid):
        return pa.nulls(n, SLOT_TYPES[name])
    if isinstance(v, pa.Scalar):
        return pa.array([v.as_py()] * n, SLOT_TYPES[name])
    return v


def _take_elements(el: Elements, idx: np.ndarray, m: int) -> Elements:
    """Re-home array elements on a new row set: new row j gets the elements of old row idx[j]."""
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    lo = np.searchsorted(sidx, el.parents, "left")
    hi = np.searchsorted(sidx, el.parents, "right")
    counts = hi - lo
    total = int(counts.sum())
    src = np.repeat(np.arange(len(el.parents)), counts)
    starts = np.cumsum(counts) - counts
    pos = np.repeat(lo, counts) + (np.arange(total) - np.repeat(starts, counts))
    new_parents = order[pos] if total else np.zeros(0, dtype=np.int64)
    has = np.zeros(m, dtype=bool)
    ok = idx >= 0
    has[ok] = el.has[idx[ok]]
    src_idx = pa.array(src, pa.int64())
    return Elements(new_parents.astype(np.int64), {k: v.take(src_idx) for k, v in el.slots.items()}, has)


# --------------------------------------------------------------------------------------------------
# Building columns from attribute structs


def col_from_attr_structs(values: pa.Array) -> Col:
    """A `Col` from ATTR structs aligned to rows (null where the row lacks the key)."""
    n = len(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    slots: dict[str, Slot] = {
        "str": pc.struct_field(values, "str"),
        "int": pc.struct_field(values, "int"),
        "float": pc.struct_field(values, "dbl"),
        "bool": pc.struct_field(values, "bool"),
    }
    # A null struct may still expose non-null children: mask by the struct validity.
    if values.null_count:
        valid = pc.is_valid(values)
        slots = {k: pc.if_else(valid, v, pa.scalar(None, v.type)) for k, v in slots.items()}
    arr = None
    types = pc.struct_field(values, "type")
    is_array = _np_bool(pc.equal(types, ARRAY))
    if is_array.any():
        rows = np.flatnonzero(is_array)
        raws = pc.struct_field(values, "raw").take(pa.array(rows)).to_pylist()
        arr = decode_arrays(rows, raws, n)
    return Col(n, slots, arr)


_ANY_VALUE_SLOTS = {"string_value": "str", "int_value": "int", "double_value": "float", "bool_value": "bool"}


def decode_arrays(rows: np.ndarray, raws: list[bytes | None], n: int) -> Elements:
    """Decode serialized OTLP `AnyValue` arrays into typed elements (strings, ints, doubles, bools)."""
    parents: list[int] = []
    cols: dict[str, list[object]] = {"str": [], "int": [], "float": [], "bool": []}
    has = np.zeros(n, dtype=bool)
    for row, raw in zip(rows.tolist(), raws, strict=True):
        has[row] = True
        value = AnyValue()
        value.ParseFromString(raw or b"")
        for el in value.array_value.values:
            kind = el.WhichOneof("value")
            slot = _ANY_VALUE_SLOTS.get(kind or "")
            if slot is None:
                continue
            parents.append(row)
            for k in cols:
                cols[k].append(getattr(el, kind) if k == slot else None)
    return Elements(
        np.array(parents, dtype=np.int64),
        {k: pa.array(v, SLOT_TYPES[k]) for k, v in cols.items()},
        has,
    )


# --------------------------------------------------------------------------------------------------
# Comparisons

_CMP: dict[str, Callable[[Slot, Slot], Slot]] = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _pairwise(op: str, a: dict[str, Slot], b: dict[str, Slot]) -> list[Slot]:
    """Boolean results of comparing every compatible slot pair (null where a slot is absent)."""
    fn = _CMP[op]
    out: list[Slot] = []
    ordered = op in ("<", "<=", ">", ">=")
    if "str" in a and "str" in b:
        out.append(fn(a["str"], b["str"]))
    if not ordered:
        for s in ("bool", "status", "kind"):
            if s in a and s in b:
                out.append(fn(a[s], b[s]))
    for sa in NUMERIC:
        if sa not in a:
            continue
        for sb in NUMERIC:
            if sb not in b:
                continue
            x, y = a[sa], b[sb]
            if "float" in (sa, sb):
                x, y = pc.cast(x, pa.float64()), pc.cast(y, pa.float64())
            out.append(fn(x, y))
    return out


def _or_results(results: list[Slot], n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for r in results:
        if isinstance(r, pa.Scalar):
            if r.is_valid and r.as_py():
                out[:] = True
        else:
            out |= _np_bool(r)
    return out


def compare(op: str, a: Col, b: Col) -> np.ndarray:
    """`a op b` per row for op in = != < <= > >=; false for missing values and type mismatches.

    Arrays compare element-wise with a scalar: true if any element satisfies the operator, except `!=`
    which needs every element to differ (Tempo 3.0; an empty array satisfies it). Alternatives: true
    if any alternative pairing is true.
    """
    n = a.n
    out = np.zeros(n, dtype=bool)
    for x in [a, *a.alts]:
        for y in [b, *b.alts]:
            out |= _compare_one(op, x, y, n)
    return out


def _compare_one(op: str, a: Col, b: Col, n: int) -> np.ndarray:
    out = _or_results(_pairwise(op, a.slots, b.slots), n)
    if a.arr is not None and b.arr is None:
        out |= _compare_elements(op, a.arr, b, n)
    elif b.arr is not None and a.arr is None:
        out |= _compare_elements(_FLIP[op], b.arr, a, n)
    return out


def _scalar_slots_at(c: Col, parents: np.ndarray) -> dict[str, Slot]:
    idx = pa.array(parents, pa.int64())
    return {k: (v if isinstance(v, pa.Scalar) else v.take(idx)) for k, v in c.slots.items()}


def _compare_elements(op: str, el: Elements, other: Col, n: int) -> np.ndarray:
    if len(el.parents):
        per_el = _or_results(_pairwise(op, el.slots, _scalar_slots_at(other, el.parents)), len(el.parents))
    else:
        per_el = np.zeros(0, dtype=bool)
    return _reduce_elements(op in ("!=",), el, per_el, other, n)


def _reduce_elements(all_semantics: bool, el: Elements, per_el: np.ndarray, other: Col, n: int) -> np.ndarray:
    if all_semantics:
        res = el.has & other.exists_own()
        res[el.parents[~per_el]] = False
        return res
    res = np.zeros(n, dtype=bool)
    res[el.parents[per_el]] = True
    return res


def regex_match(a: Col, pattern: str, negate: bool) -> np.ndarray:
    """`a =~ pattern` / `a !~ pattern`, fully anchored like Tempo (`^(?s:re)$`); strings only."""
    anchored = f"^(?s:{pattern})$"
    out = np.zeros(a.n, dtype=bool)
    for c in [a, *a.alts]:
        s = c.slots.get("str")
        if s is not None:
            m = _regex(s, anchored)
            valid = _valid(s, a.n)
            hit = (~m if negate else m) & valid
            out |= hit
        if c.arr is not None and "str" in c.arr.slots:
            el_s = c.arr.slots["str"]
            m = _regex(el_s, anchored) if len(el_s) else np.zeros(0, dtype=bool)
            valid = _valid(el_s, len(el_s))
            per_el = (~m if negate else m) & valid
            out |= _reduce_elements(negate, c.arr, per_el, Col(a.n, {"str": pa.scalar("", pa.string())}), a.n)
    return out


def _regex(s: Slot, anchored: str) -> np.ndarray:
    if isinstance(s, pa.Scalar):
        hit = s.is_valid and re.fullmatch(anchored, s.as_py() or "") is not None
        return np.array([hit])
    return _np_bool(pc.match_substring_regex(s, anchored))


# --------------------------------------------------------------------------------------------------
# Arithmetic and logic


def _numeric_np(v: Slot, n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) as numpy arrays of length n."""
    if isinstance(v, pa.Scalar):
        if not v.is_valid:
            return np.zeros(n, dtype=dtype), np.zeros(n, dtype=bool)
        return np.full(n, v.as_py(), dtype=dtype), np.ones(n, dtype=bool)
    valid = _np_bool(pc.is_valid(v))
    vals = (
        pc.cast(v, pa.float64() if dtype is np.float64 else pa.int64())
        .fill_null(0)
        .to_numpy(zero_copy_only=False)
    )
    return vals.astype(dtype, copy=False), valid


def _int_op(op: str, x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if op in ("/", "%") and (valid & (y == 0)).any():
        raise EvaluationError("integer division by zero")
    ys = np.where(y == 0, 1, y)
    with np.errstate(over="ignore"):
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":  # Go truncates toward zero
            q = np.abs(x) // np.abs(ys)
            return np.where((x < 0) != (ys < 0), -q, q)
        if op == "%":  # Go: sign of the dividend
            return np.fmod(x, ys)
        # "^": lhs to the power of rhs (Tempo's Go code swaps the operands; we do not).
        return np.where(y >= 0, np.power(x, np.maximum(y, 0)), 0)


def _float_op(op: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            return x / y
        if op == "%":
            return np.fmod(x, y)
        return np.power(x, y)


def arithmetic(op: str, a: Col, b: Col) -> Col:
    """`a op b` for + - * / % ^: int with int stays int, anything with a float or duration is float."""
    a, b = a.primary(), b.primary()
    n = a.n
    out: dict[str, Slot] = {}
    if "int" in a.slots and "int" in b.slots:
        x, vx = _numeric_np(a.slots["int"], n, np.int64)
        y, vy = _numeric_np(b.slots["int"], n, np.int64)
        valid = vx & vy
        out["int"] = pa.array(_int_op(op, x, y, valid), pa.int64(), mask=~valid)
    fvals = np.zeros(n, dtype=np.float64)
    fvalid = np.zeros(n, dtype=bool)
    for sa in NUMERIC:
        for sb in NUMERIC:
            if sa not in a.slots or sb not in b.slots or (sa == "int" and sb == "int"):
                continue
            x, vx = _numeric_np(a.slots[sa], n, np.float64)
            y, vy = _numeric_np(b.slots[sb], n, np.float64)
            valid = vx & vy & ~fvalid
            if valid.any():
                fvals = np.where(valid, _float_op(op, x, y), fvals)
                fvalid |= valid
    if fvalid.any():
        out["float"] = pa.array(fvals, pa.float64(), mask=~fvalid)
    return Col(n, out)


def negate(a: Col) -> Col:
    a = a.primary()
    return Col(a.n, {k: pc.negate(v) for k, v in a.slots.items() if k in NUMERIC})


def _as_bool(a: Col) -> pa.Array:
    a = a.primary()
    v = a.slots.get("bool")
    if v is None:
        return pa.nulls(a.n, pa.bool_())
    return _broadcast_slot(v, a.n, "bool")


def logical_not(a: Col) -> Col:
    return Col.boolean(pc.invert(_as_bool(a)))


def logical_and(a: Col, b: Col) -> Col:
    return Col.boolean(pc.and_kleene(_as_bool(a), _as_bool(b)))


def logical_or(a: Col, b: Col) -> Col:
    return Col.boolean(pc.or_kleene(_as_bool(a), _as_bool(b)))


def truth(a: Col, unknown_is_true: bool = False) -> np.ndarray:
    """Rows where the value is boolean true (nulls count as `unknown_is_true`)."""
    v = _as_bool(a)
    return v.fill_null(unknown_is_true).to_numpy(zero_copy_only=False).astype(bool, copy=False)


# --------------------------------------------------------------------------------------------------
# Grouping keys (by())


def group_codes(c: Col) -> tuple[np.ndarray, list[TypedValue]]:
    """A code per row identifying its (type, value), -1 for nil, and the (slot, value) of each code."""
    c = c.primary()
    codes = np.full(c.n, -1, dtype=np.int64)
    values: list[TypedValue] = []
    for name, v in c.slots.items():
        v = _broadcast_slot(v, c.n, name)
        enc = pc.dictionary_encode(v)
        idx = enc.indices
        valid = _np_bool(pc.is_valid(idx))
        take = valid & (codes < 0)
        ind = idx.fill_null(0).to_numpy(zero_copy_only=False)
        codes[take] = ind[take] + len(values)
        values.extend((name, x) for x in enc.dictionary.to_pylist())
    return codes, values
