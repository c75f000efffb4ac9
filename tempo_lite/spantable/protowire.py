"""Protobuf wire helpers shared by the OTLP decoders and encoders (pure).

`mirror_classes` builds *mirror* schemas: messages with OTLP's field numbers in which some fields are
declared differently (a submessage as `bytes`, a field left out) so that upb, parsing in C, hands
Python exactly what a hot path needs (a span's own encoding, every KeyValue as bytes) without a Python
wrapper object per submessage. The span table's decoder and the distributor's wire scan both use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
# One field of a mirror message: (name, number, F.TYPE_*, spec), spec "" (optional scalar), "*" (repeated
# scalar), "Name" (a message of this mirror) or "*Name" (repeated message).
MirrorField = tuple[str, int, int, str]
_SCALAR_PACKABLE = {F.TYPE_UINT32, F.TYPE_INT32, F.TYPE_UINT64, F.TYPE_INT64, F.TYPE_FIXED32, F.TYPE_FIXED64,
                    F.TYPE_SFIXED32, F.TYPE_SFIXED64, F.TYPE_DOUBLE, F.TYPE_FLOAT, F.TYPE_BOOL, F.TYPE_ENUM,
                    F.TYPE_SINT32, F.TYPE_SINT64}


def mirror_classes(package: str, messages: Mapping[str, Sequence[MirrorField]]) -> dict[str, Any]:
    """Message classes for a proto3 mirror schema in its own descriptor pool, by message name.

    Repeated scalars are declared unpacked (OTLP writes them one occurrence each); upb parses both forms.
    Typed `Any`: the classes are made at run time, so no stub can describe their fields."""
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}.proto", package=package,
                                             syntax="proto3")
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, typ, spec in fields:
            f = m.field.add(name=fname, number=number, type=typ,
                            label=F.LABEL_REPEATED if spec.startswith("*") else F.LABEL_OPTIONAL)
            if typ == F.TYPE_MESSAGE:
                f.type_name = f".{package}.{spec.lstrip('*')}"
            elif spec == "*" and typ in _SCALAR_PACKABLE:
                f.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in messages}


def varint(n: int) -> bytes:
    """The base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    """One length-delimited field: `tag` (one byte: field numbers 1-15, wire type 2), length, payload."""
    n = len(payload)
    if n < 0x80:  # the common case on the distributor's per-span path
        return bytes((tag, n)) + payload
    return bytes((tag,)) + varint(n) + payload
