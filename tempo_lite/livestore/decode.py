"""Pure parts of the live-store: WAL records -> span tables, poison records set apart, range digests.

No I/O and no state: the live-store runs `decode_isolating` in a worker thread and keeps what it returns.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite import spantable
from tempo_lite.distributor.tenant import tenant_id_problem
from tempo_lite.distributor.wire import MAX_DURATION_NANO, MAX_UNIX_NANO
from tempo_lite.wal import WalRecord

DIGEST_MODULUS = 1 << 64


def record_digest(record: WalRecord) -> int:
    """A record's 64-bit fingerprint; a range's digest is the sum of its records' (mod 2^64), so it does
    not depend on how the range was cut into read batches."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{record.partition}/{record.offset}/{record.tenant}/".encode())
    h.update(record.payload)
    return int.from_bytes(h.digest(), "big")


def range_digest_hex(digest: int) -> str:
    return f"{digest % DIGEST_MODULUS:016x}"


def decode_records(records: list[WalRecord]) -> dict[str, spantable.SpanTable]:
    """WAL records -> one span table per tenant (CPU-bound; run in a thread)."""
    by_tenant: dict[str, list[bytes]] = {}
    for r in records:
        by_tenant.setdefault(r.tenant, []).append(r.payload)
    return {t: spantable.flatten_payloads(payloads) for t, payloads in by_tenant.items()}




def unbuildable(table: spantable.SpanTable) -> str | None:
    """Why later stages (block-builder, generator, trace by ID) cannot take this table, else None.

    The distributor refuses such spans at the door; records already in the WAL (written before that
    rule, or by another writer) are checked again here.
    """
    spans = table.spans
    if spans.num_rows == 0:
        return None
    start, duration = spans.column("start_unix_nano"), spans.column("duration_nano")
    if pc.any(pc.less(start, 0)).as_py():
        return "a span's start_time_unix_nano is not below 2^63"
    if pc.any(pc.greater(duration, MAX_DURATION_NANO)).as_py():
        return "a span's duration is not below 2^53 ns"
    if pc.any(pc.greater(start, pc.subtract(pa.scalar(MAX_UNIX_NANO), pc.max_element_wise(duration, 0)))).as_py():
        return "a span's end_time_unix_nano is not below 2^63"
    return None


def decode_isolating(records: list[WalRecord]) -> tuple[dict[str, spantable.SpanTable], list[tuple[WalRecord, str]]]:
    """`decode_records`, setting aside the records that fail to decode or are `unbuildable`.

    The whole batch is decoded at once; only when that fails is each record decoded alone. A record
    whose tenant ID cannot name a directory (written before the distributor checked) is set aside too:
    its blocks could never be written.
    """
    poison: list[tuple[WalRecord, str]] = []
    if any(tenant_id_problem(r.tenant) for r in records):
        poison = [(r, f"{tenant_id_problem(r.tenant)}") for r in records if tenant_id_problem(r.tenant)]
        records = [r for r in records if not tenant_id_problem(r.tenant)]
    try:
        tables = decode_records(records)
        if not any(unbuildable(t) for t in tables.values()):
            return tables, poison
    except Exception:  # noqa: BLE001 - any decode failure: find the records to blame below
        pass
    good: dict[str, list[spantable.SpanTable]] = {}
    for r in records:
        try:
            table = spantable.flatten_payloads([r.payload])
            problem = unbuildable(table)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the record is poison
            problem = f"cannot decode: {type(exc).__name__}: {exc}"
        if problem:
            poison.append((r, problem))
        else:
            good.setdefault(r.tenant, []).append(table)
    return {t: spantable.concat(ts) for t, ts in good.items()}, poison

