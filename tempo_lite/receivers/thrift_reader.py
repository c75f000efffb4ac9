"""A bounded Thrift reader (binary and compact protocols) into thriftpy2 struct objects. Pure; no I/O.

thriftpy2 parses the IDL and provides the struct classes and their `thrift_spec`; its own protocol
readers trust the lengths they read: a list header claiming 2^31 elements of an unknown type makes them
loop 2^31 times without consuming a byte (one 8-byte body stalled the event loop). This reader refuses,
before it loops or allocates, every length or element count that the bytes left in the body cannot
hold, every unknown type, and nesting deeper than `MAX_DEPTH`; so its work is linear in the body size.

Semantics follow the Thrift specification (and Apache Thrift's readers): a field whose wire type does
not match the IDL is skipped, as is a container whose element types do not match; strings that are not
valid UTF-8 are kept as bytes (as thriftpy2 does); `required` is not enforced here.
"""

from __future__ import annotations

import struct
from typing import Any

from thriftpy2.thrift import TType

MAX_DEPTH = 64  # thriftpy2's own default nesting budget; Jaeger's schema needs 5


class ThriftDecodeError(ValueError):
    """The bytes are not a valid encoding of the expected struct; `str()` says what and where."""


_BIN = (TType.STRING, TType.BINARY)
_KNOWN = frozenset(
    {TType.BOOL, TType.BYTE, TType.I16, TType.I32, TType.I64, TType.DOUBLE, TType.STRING, TType.STRUCT,
     TType.MAP, TType.SET, TType.LIST}
)
# The fewest bytes one value of each type occupies on the wire (what bounds an element count).
_MIN_BINARY = {
    TType.BOOL: 1, TType.BYTE: 1, TType.I16: 2, TType.I32: 4, TType.I64: 8, TType.DOUBLE: 8, TType.STRING: 4,
    TType.STRUCT: 1, TType.MAP: 6, TType.SET: 5, TType.LIST: 5,
}
_MIN_COMPACT = {t: 1 for t in _MIN_BINARY} | {TType.DOUBLE: 8}

# Compact protocol type nibbles -> TType (1 and 2 are booleans: true / false).
_COMPACT_TYPES = {
    1: TType.BOOL, 2: TType.BOOL, 3: TType.BYTE, 4: TType.I16, 5: TType.I32, 6: TType.I64, 7: TType.DOUBLE,
    8: TType.STRING, 9: TType.LIST, 10: TType.SET, 11: TType.MAP, 12: TType.STRUCT,
}
_COMPACT_PROTOCOL_ID = 0x82
_BINARY_VERSION_1 = 0x80010000

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_I64 = struct.Struct("!q")
_DOUBLE_BE = struct.Struct("!d")
_DOUBLE_LE = struct.Struct("<d")


def _same_type(wire: int, spec: int) -> bool:
    return wire == spec or (wire in _BIN and spec in _BIN)


def _split_spec(spec: Any) -> tuple[int, Any]:
    """A container's element spec is a TType, or (TType, nested spec)."""
    if isinstance(spec, tuple):
        return spec[0], spec[1]
    return spec, None


class _Reader:
    """Shared structure walk; subclasses read the primitives of one protocol."""

    min_size: dict[int, int]

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0

    # --- bounds -------------------------------------------------------------------------------

    def fail(self, what: str) -> ThriftDecodeError:
        return ThriftDecodeError(f"{what} at byte {self.pos} of {len(self.data)}")

    def take(self, n: int) -> bytes:
        if n < 0:
            raise self.fail(f"negative length {n}")
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def check_count(self, count: int, *types: int) -> None:
        """`count` values of `types` (one per type, e.g. key and value) must fit in the bytes left."""
        if count < 0:
            raise self.fail(f"negative element count {count}")
        if count == 0:
            return
        for ttype in types:
            if ttype not in _KNOWN:
                raise self.fail(f"unknown element type {ttype}")
        need = count * sum(self.min_size[t] for t in types)
        if need > len(self.data) - self.pos:
            raise self.fail(f"element count {count} needs at least {need} bytes, {len(self.data) - self.pos} left")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")

    # --- protocol primitives (per protocol) ---------------------------------------------------

    def field_begin(self) -> tuple[int, int]:
        raise NotImplementedError

    def struct_begin(self) -> None:
        self.enter()

    def struct_end(self) -> None:
        self.depth -= 1

    def list_begin(self) -> tuple[int, int]:
        raise NotImplementedError

    def map_begin(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def read_bool(self) -> bool:
        raise NotImplementedError

    def read_byte(self) -> int:
        return _I8.unpack(self.take(1))[0]

    def read_int(self, ttype: int) -> int:
        raise NotImplementedError

    def read_double(self) -> float:
        raise NotImplementedError

    def read_bytes(self) -> bytes:
        raise NotImplementedError

    # --- structure ----------------------------------------------------------------------------

    def read_struct(self, obj: Any) -> Any:
        spec = obj.thrift_spec
        self.struct_begin()
        while True:
            ftype, fid = self.field_begin()
            if ftype == TType.STOP:
                break
            field = spec.get(fid)
            if field is None or not _same_type(ftype, field[0]):
                self.skip(ftype)
                continue
            setattr(obj, field[1], self.read_value(field[0], field[2] if len(field) == 4 else None))
        self.struct_end()
        return obj

    def read_value(self, ttype: int, spec: Any) -> Any:
        if ttype == TType.BOOL:
            return self.read_bool()
        if ttype == TType.BYTE:
            return self.read_byte()
        if ttype in (TType.I16, TType.I32, TType.I64):
            return self.read_int(ttype)
        if ttype == TType.DOUBLE:
            return self.read_double()
        if ttype == TType.BINARY:
            return self.read_bytes()
        if ttype == TType.STRING:
            raw = self.read_bytes()
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        if ttype == TType.STRUCT:
            return self.read_struct(spec())
        if ttype in (TType.LIST, TType.SET):
            return self.read_list(spec)
        if ttype == TType.MAP:
            return self.read_map(spec)
        raise self.fail(f"unsupported type {ttype}")

    def read_list(self, spec: Any) -> list[Any]:
        v_type, v_spec = _split_spec(spec)
        self.enter()
        e_type, size = self.list_begin()
        self.check_count(size, e_type)
        if _same_type(e_type, v_type):
            result = [self.read_value(v_type, v_spec) for _ in range(size)]
        else:
            for _ in range(size):
                self.skip(e_type)
            result = []
        self.depth -= 1
        return result

    def read_map(self, spec: Any) -> dict[Any, Any]:
        k_type, k_spec = _split_spec(spec[0])
        v_type, v_spec = _split_spec(spec[1])
        self.enter()
        wk_type, wv_type, size = self.map_begin()
        self.check_count(size, wk_type, wv_type)
        result: dict[Any, Any] = {}
        if _same_type(wk_type, k_type) and _same_type(wv_type, v_type):
            for _ in range(size):
                key = self.read_value(k_type, k_spec)
                result[key] = self.read_value(v_type, v_spec)
        else:
            for _ in range(size):
                self.skip(wk_type)
                self.skip(wv_type)
        self.depth -= 1
        return result

    def skip(self, ttype: int) -> None:
        if ttype == TType.STRUCT:
            self.struct_begin()
            while True:
                ftype, _fid = self.field_begin()
                if ftype == TType.STOP:
                    break
                self.skip(ftype)
            self.struct_end()
        elif ttype in (TType.LIST, TType.SET):
            self.enter()
            e_type, size = self.list_begin()
            self.check_count(size, e_type)
            for _ in range(size):
                self.skip(e_type)
            self.depth -= 1
        elif ttype == TType.MAP:
            self.enter()
            k_type, v_type, size = self.map_begin()
            self.check_count(size, k_type, v_type)
            for _ in range(size):
                self.skip(k_type)
                self.skip(v_type)
            self.depth -= 1
        elif ttype in _KNOWN:
            self.read_value(TType.BINARY if ttype in _BIN else ttype, None)
        else:
            raise self.fail(f"unknown field type {ttype}")


class _BinaryReader(_Reader):
    min_size = _MIN_BINARY

    def field_begin(self) -> tuple[int, int]:
        ftype = self.read_byte()
        if ftype == TType.STOP:
            return ftype, 0
        return ftype, _I16.unpack(self.take(2))[0]

    def list_begin(self) -> tuple[int, int]:
        e_type = self.read_byte()
        return e_type, _I32.unpack(self.take(4))[0]

    def map_begin(self) -> tuple[int, int, int]:
        k_type, v_type = self.read_byte(), self.read_byte()
        return k_type, v_type, _I32.unpack(self.take(4))[0]

    def read_bool(self) -> bool:
        return self.read_byte() != 0

    def read_int(self, ttype: int) -> int:
        if ttype == TType.I16:
            return _I16.unpack(self.take(2))[0]
        if ttype == TType.I32:
            return _I32.unpack(self.take(4))[0]
        return _I64.unpack(self.take(8))[0]

    def read_double(self) -> float:
        return _DOUBLE_BE.unpack(self.take(8))[0]

    def read_bytes(self) -> bytes:
        return self.take(_I32.unpack(self.take(4))[0])

    def message_begin(self) -> tuple[str, int, int]:
        head = _I32.unpack(self.take(4))[0]
        if head < 0:
            if (head & 0xFFFF0000) != _BINARY_VERSION_1:
                raise self.fail(f"bad binary protocol version {head & 0xFFFF0000:#x}")
            name = self.read_bytes()
            mtype = head & 0xFF
        else:
            name = self.take(head)
            mtype = self.read_byte()
        seqid = _I32.unpack(self.take(4))[0]
        return name.decode("utf-8", "replace"), mtype, seqid


class _CompactReader(_Reader):
    min_size = _MIN_COMPACT

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.last_fid = 0
        self.fids: list[int] = []
        self.pending_bool: bool | None = None

    def varint(self) -> int:
        result = shift = 0
        for _ in range(10):
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
        raise self.fail("varint longer than 10 bytes")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def compact_type(self, nibble: int) -> int:
        ttype = _COMPACT_TYPES.get(nibble)
        if ttype is None:
            raise self.fail(f"unknown compact type {nibble}")
        return ttype

    def struct_begin(self) -> None:
        self.enter()
        self.fids.append(self.last_fid)
        self.last_fid = 0

    def struct_end(self) -> None:
        self.depth -= 1
        self.last_fid = self.fids.pop()

    def field_begin(self) -> tuple[int, int]:
        head = self.take(1)[0]
        nibble = head & 0x0F
        if nibble == 0:
            return TType.STOP, 0
        delta = head >> 4
        fid = self.last_fid + delta if delta else self.zigzag()
        if not -(1 << 15) <= fid < 1 << 15:
            raise self.fail(f"field id {fid} out of range")
        self.last_fid = fid
        ttype = self.compact_type(nibble)
        if ttype == TType.BOOL:
            self.pending_bool = nibble == 1
        return ttype, fid

    def list_begin(self) -> tuple[int, int]:
        head = self.take(1)[0]
        size = head >> 4
        if size == 15:
            size = self.varint()
        return self.compact_type(head & 0x0F) if size else TType.BOOL, size

    def map_begin(self) -> tuple[int, int, int]:
        size = self.varint()
        if size == 0:
            return TType.BOOL, TType.BOOL, 0
        types = self.take(1)[0]
        return self.compact_type(types >> 4), self.compact_type(types & 0x0F), size

    def read_bool(self) -> bool:
        if self.pending_bool is not None:  # a boolean field carries its value in the field header
            value, self.pending_bool = self.pending_bool, None
            return value
        return self.take(1)[0] == 1

    def read_value(self, ttype: int, spec: Any) -> Any:
        if ttype != TType.BOOL:
            self.pending_bool = None
        return super().read_value(ttype, spec)

    def read_int(self, ttype: int) -> int:
        value = self.zigzag()
        bits = {TType.I16: 16, TType.I32: 32}.get(ttype, 64)
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise self.fail(f"{bits}-bit integer {value} out of range")
        return value

    def read_double(self) -> float:
        return _DOUBLE_LE.unpack(self.take(8))[0]

    def read_bytes(self) -> bytes:
        return self.take(self.varint())

    def message_begin(self) -> tuple[str, int, int]:
        if self.take(1)[0] != _COMPACT_PROTOCOL_ID:
            raise self.fail("not a compact protocol message")
        version_type = self.take(1)[0]
        if version_type & 0x1F != 1:
            raise self.fail(f"bad compact protocol version {version_type & 0x1F}")
        seqid = self.varint()
        name = self.read_bytes()
        return name.decode("utf-8", "replace"), version_type >> 5, seqid


def _reader(data: bytes, compact: bool) -> _BinaryReader | _CompactReader:
    return _CompactReader(data) if compact else _BinaryReader(data)


def read_struct(data: bytes, cls: Any, *, compact: bool = False) -> Any:
    """Decode one struct of thriftpy2 class `cls` from the start of `data` (trailing bytes are ignored)."""
    return _reader(data, compact).read_struct(cls())


def read_message(data: bytes, name: str, types: tuple[int, ...], args_cls: Any, *, compact: bool) -> Any:
    """Decode a message named `name` of one of `types` and return its arguments struct (class `args_cls`)."""
    reader = _reader(data, compact)
    got, mtype, _seqid = reader.message_begin()
    if got != name:
        raise ThriftDecodeError(f"unsupported method {got!r}, expected {name!r}")
    if mtype not in types:
        raise ThriftDecodeError(f"unexpected message type {mtype}")
    return reader.read_struct(args_cls())


__all__ = ["MAX_DEPTH", "ThriftDecodeError", "read_message", "read_struct"]
