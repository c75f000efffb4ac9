"""The embedded write-ahead log: SQLite (WAL journal, synchronous=FULL) in this process, no broker.

One writer loop owns the write connection and turns every append or commit queued while the previous
transaction was being fsynced into the next transaction (group commit). Readers use their own
connections, so reads never wait for an fsync. Layout and figures: docs/wal.md.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from tempo_lite.errors import ConfigError, Unavailable
from tempo_lite.wal import BackendChecks, WalEntry, WalRecord, WalStatistics

DB_FILE_NAME = "wal.sqlite3"
SCHEMA_VERSION = "1"

# One transaction holds at most this much payload; the rest waits for the next fsync. Bounds the
# memory a batch pins and the time one commit takes (~87 MB/s measured, see docs/wal.md).
MAX_BATCH_BYTES = 64 << 20
MAX_BATCH_REQUESTS = 4096
READ_CONNECTIONS = 4
PAGE_SIZE = 65536

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    timestamp_ns INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (partition, offset)
);
CREATE TABLE IF NOT EXISTS commits (
    grp TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, partition)
);
"""


@dataclass(eq=False)
class _Request:
    """One caller's append or commit, waiting in the writer queue for its transaction."""

    entries: Sequence[WalEntry] = ()
    commit: tuple[str, int, int] | None = None
    timestamp_ns: int = 0
    nbytes: int = 0
    done: trio.Event = field(default_factory=trio.Event)
    offsets: list[int] = field(default_factory=list)
    error: Exception | None = None


@dataclass
class _BatchResult:
    """What one transaction changed, applied to the in-memory view only after COMMIT succeeded."""

    offsets: list[list[int]]
    end: list[int]
    committed: dict[tuple[str, int], int]
    low: list[int]
    retained_bytes: list[int]


def _connect(db_path: str, *, read_only: bool) -> sqlite3.Connection:
    # check_same_thread=False: trio's worker threads differ per call; the writer loop and the
    # reader pool make sure one connection is used by one thread at a time.
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    # Takes effect only when the file is created. 64 KiB pages keep a 46 KB record in one overflow
    # chain of 1 page instead of 12: 8 appenders went from ~76-140 to ~190 MB/s (docs/wal.md).
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    # Checkpoint every 1000 pages (64 MB of WAL); afterwards shrink the -wal file back to that size.
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    conn.execute(f"PRAGMA journal_size_limit={64 << 20}")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    if read_only:
        conn.execute("PRAGMA query_only=1")
    return conn


class EmbeddedWal(BackendChecks):
    """`WriteAheadLog` on a SQLite database in `path`; create it with `open_embedded_wal`."""

    def __init__(
        self,
        db_path: str,
        identity: str,
        conn: sqlite3.Connection,
        partitions: int,
        groups: tuple[str, ...],
        bytes_limit: int,
        end: list[int],
        low: list[int],
        committed: dict[tuple[str, int], int],
        retained_bytes: list[int],
    ) -> None:
        self._db_path = db_path
        self._what = f"WAL at {db_path}"
        self._identity = identity
        self._conn = conn
        self._partitions = partitions
        self._groups = groups
        self._bytes_limit = bytes_limit
        self._end = end
        self._low = low
        self._committed = committed
        self._retained_bytes = retained_bytes
        self._pending_bytes = 0
        self._closed = False
        self._appended = [trio.Event() for _ in range(partitions)]
        self._send, self._receive = trio.open_memory_channel[_Request](math.inf)
        self._writer_limiter = trio.CapacityLimiter(1)
        self._reader_limiter = trio.CapacityLimiter(READ_CONNECTIONS)
        self._readers: list[sqlite3.Connection] = []
        self._writer_exited = trio.Event()
        # Introspection: how many transactions (fsyncs) the writer committed, to see group commit work.
        self.transactions_committed = 0

    # -- introspection -------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def path(self) -> str:
        return self._db_path

    @property
    def identity(self) -> str:
        return self._identity

    def statistics(self) -> WalStatistics:
        return WalStatistics(
            partitions=self._partitions,
            records_retained=sum(e - lo for e, lo in zip(self._end, self._low, strict=True)),
            bytes_retained=sum(self._retained_bytes) + self._pending_bytes,
            bytes_limit=self._bytes_limit,
        )

    # -- producer side -------------------------------------------------------------------------

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not entries:
            return []
        for entry in entries:
            self._check_partition(entry.partition)
        nbytes = sum(len(e.payload) for e in entries)
        self._check_open()
        retained = sum(self._retained_bytes) + self._pending_bytes
        if retained + nbytes > self._bytes_limit:
            raise Unavailable(
                f"WAL at {self._db_path} holds {retained} bytes not yet committed by every consumer group "
                f"{list(self._groups)}; appending {nbytes} more would pass bytes_limit={self._bytes_limit}"
            )
        request = _Request(entries=list(entries), timestamp_ns=time.time_ns(), nbytes=nbytes)
        # Counted against the bound from now until the writer has either stored it or failed.
        self._pending_bytes += nbytes
        await self._submit(request)
        return request.offsets

    # -- consumer side -------------------------------------------------------------------------

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        self._check_partition(partition)
        end = self._end[partition]
        if max_records <= 0 or start_offset >= end:
            return []
        # Only records below the end offset known here: the writer thread commits to SQLite before it
        # publishes the new end, and a consumer must never see (and commit past) a record the log's
        # own end offset does not include yet.
        return await trio.to_thread.run_sync(
            self._read_sync, partition, start_offset, min(max_records, end - start_offset),
            limiter=self._reader_limiter,
        )

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        self._check_partition(partition)
        with trio.move_on_after(timeout):
            while self._end[partition] <= offset:
                await self._appended[partition].wait()
        return self._end[partition] > offset

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        self._check_group(group)
        self._check_partition(partition)
        if not 0 <= next_offset <= self._end[partition]:
            raise ValueError(
                f"cannot commit offset {next_offset} for group {group!r} on partition {partition}: "
                f"the partition ends at {self._end[partition]}"
            )
        self._check_open()
        await self._submit(_Request(commit=(group, partition, next_offset)))

    async def committed(self, group: str, partition: int) -> int:
        self._check_group(group)
        self._check_partition(partition)
        return self._committed[(group, partition)]

    async def end_offset(self, partition: int) -> int:
        self._check_partition(partition)
        return self._end[partition]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send.close()
        await self._writer_exited.wait()
        conns = [self._conn, *self._readers]
        self._readers = []

        def close_all() -> None:
            for c in conns:
                c.close()

        await trio.to_thread.run_sync(close_all)

    # -- the writer loop -----------------------------------------------------------------------

    async def _submit(self, request: _Request) -> None:
        self._send.send_nowait(request)
        # A caller cancelled here still gets its request written (it may have been fsynced already);
        # it just does not learn the offsets, which is the at-least-once contract of a WAL.
        await request.done.wait()
        if request.error is not None:
            raise request.error

    async def run(self) -> None:
        """Drain the queue: every request queued during one fsync goes into the next transaction."""
        try:
            async with self._receive:
                while True:
                    try:
                        batch = [await self._receive.receive()]
                    except trio.EndOfChannel:
                        return
                    size = batch[0].nbytes
                    while size < MAX_BATCH_BYTES and len(batch) < MAX_BATCH_REQUESTS:
                        try:
                            request = self._receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        batch.append(request)
                        size += request.nbytes
                    await self._write_batch(batch)
        finally:
            self._writer_exited.set()

    async def _write_batch(self, batch: list[_Request]) -> None:
        try:
            result = await trio.to_thread.run_sync(self._write_sync, batch, limiter=self._writer_limiter)
        except Exception as exc:  # disk full, I/O error: every caller of this batch gets a 503
            error = Unavailable(f"WAL write to {self._db_path} failed: {exc}")
            for request in batch:
                self._pending_bytes -= request.nbytes
                request.error = error
                request.done.set()
            return
        self.transactions_committed += 1
        touched = {e.partition for r in batch for e in r.entries}
        self._end = result.end
        self._low = result.low
        self._committed = result.committed
        self._retained_bytes = result.retained_bytes
        for request, offsets in zip(batch, result.offsets, strict=True):
            self._pending_bytes -= request.nbytes
            request.offsets = offsets
            request.done.set()
        for partition in touched:
            event, self._appended[partition] = self._appended[partition], trio.Event()
            event.set()

    def _write_sync(self, batch: list[_Request]) -> _BatchResult:
        """One transaction for the whole batch; runs in the writer thread, never concurrently."""
        end = list(self._end)
        low = list(self._low)
        committed = dict(self._committed)
        retained_bytes = list(self._retained_bytes)
        offsets: list[list[int]] = []
        rows: list[tuple[int, int, str, int, bytes]] = []
        commits: dict[tuple[str, int], int] = {}
        for request in batch:
            assigned = []
            for entry in request.entries:
                offset = end[entry.partition]
                end[entry.partition] = offset + 1
                retained_bytes[entry.partition] += len(entry.payload)
                rows.append((entry.partition, offset, entry.tenant, request.timestamp_ns, entry.payload))
                assigned.append(offset)
            offsets.append(assigned)
            if request.commit is not None:
                group, partition, next_offset = request.commit
                commits[(group, partition)] = next_offset
        committed.update(commits)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(
                    "INSERT INTO records (partition, offset, tenant, timestamp_ns, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                conn.executemany(
                    "UPDATE partitions SET next_offset = ? WHERE partition = ?",
                    [(end[p], p) for p in {row[0] for row in rows}],
                )
            if commits:
                conn.executemany(
                    "INSERT INTO commits (grp, partition, next_offset) VALUES (?,?,?) "
                    "ON CONFLICT (grp, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [(g, p, o) for (g, p), o in commits.items()],
                )
                for partition in {p for _, p in commits}:
                    _retain_from(conn, partition, min(committed[(g, partition)] for g in self._groups), low,
                                 retained_bytes)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may already have rolled back
                conn.execute("ROLLBACK")
            raise
        return _BatchResult(offsets, end, committed, low, retained_bytes)

    # -- reads ---------------------------------------------------------------------------------

    def _read_sync(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        try:
            conn = self._readers.pop()
        except IndexError:
            conn = _connect(self._db_path, read_only=True)
        try:
            rows = conn.execute(
                "SELECT offset, tenant, payload, timestamp_ns FROM records "
                "WHERE partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (partition, start_offset, max_records),
            ).fetchall()
        finally:
            self._readers.append(conn)
        return [WalRecord(partition, offset, tenant, payload, ts) for offset, tenant, payload, ts in rows]


def _retain_from(conn: sqlite3.Connection, partition: int, new_low: int, low: list[int],
                 retained_bytes: list[int]) -> None:
    """Delete the records of `partition` below `new_low` (every group is past them), when that is above
    `low[partition]`; updates `low` and `retained_bytes` with what that freed."""
    if new_low <= low[partition]:
        return
    (freed,) = conn.execute(
        "SELECT COALESCE(SUM(length(payload)), 0) FROM records WHERE partition = ? AND offset < ?",
        (partition, new_low),
    ).fetchone()
    conn.execute("DELETE FROM records WHERE partition = ? AND offset < ?", (partition, new_low))
    retained_bytes[partition] -= int(freed)
    low[partition] = new_low


def _open_sync(
    directory: str, partitions: int, groups: tuple[str, ...], bytes_limit: int
) -> tuple[str, str, sqlite3.Connection, list[int], list[int], dict[tuple[str, int], int], list[int]]:
    """Create or reopen the database and load the state the writer keeps in memory."""
    os.makedirs(directory, exist_ok=True)
    db_path = os.path.join(directory, DB_FILE_NAME)
    conn = _connect(db_path, read_only=False)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            raise ConfigError(f"WAL at {db_path}: SQLite refused journal_mode=WAL (got {mode!r})")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )
        # The WAL's identity: created once with the database (or on the first open of a database made
        # before identities existed) and never changed; block IDs include it.
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('wal_id', ?)", (str(uuid.uuid4()),))
        (identity,) = conn.execute("SELECT value FROM meta WHERE key = 'wal_id'").fetchone()
        (existing,) = conn.execute("SELECT COUNT(*) FROM partitions").fetchone()
        if existing > partitions:
            conn.execute("ROLLBACK")
            raise ConfigError(
                f"WAL at {db_path} has {existing} partitions but wal.partitions={partitions}: "
                "partitions can be added, never removed"
            )
        conn.executemany(
            "INSERT OR IGNORE INTO partitions (partition, next_offset) VALUES (?, 0)",
            [(p,) for p in range(partitions)],
        )
        end = [0] * partitions
        for partition, next_offset in conn.execute("SELECT partition, next_offset FROM partitions"):
            end[partition] = next_offset
        committed = {(g, p): 0 for g in groups for p in range(partitions)}
        for group, partition, next_offset in conn.execute("SELECT grp, partition, next_offset FROM commits"):
            if (group, partition) in committed:
                committed[(group, partition)] = next_offset
        low = list(end)
        retained_bytes = [0] * partitions
        for partition, first, size in conn.execute(
            "SELECT partition, MIN(offset), SUM(length(payload)) FROM records GROUP BY partition"
        ):
            low[partition] = first
            retained_bytes[partition] = size
        # The group list may have changed since the last run (a group removed): apply retention now.
        for partition in range(partitions):
            new_low = min((committed[(g, partition)] for g in groups), default=end[partition])
            _retain_from(conn, partition, new_low, low, retained_bytes)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise
    return db_path, identity, conn, end, low, committed, retained_bytes


async def open_embedded_wal(
    path: str, partitions: int, groups: Sequence[str], bytes_limit: int
) -> EmbeddedWal:
    """Open (creating if needed) the embedded WAL in directory `path` and start its writer loop.

    The caller runs `wal.run()` (the writer loop) in a nursery it owns, as `factory.open_wal` does;
    `aclose()` drains the queue and makes it return.
    """
    if partitions <= 0:
        raise ConfigError(f"wal.partitions must be positive, got {partitions}")
    if not groups:
        raise ConfigError("wal.groups must name at least one consumer group")
    group_tuple = tuple(groups)
    db_path, identity, conn, end, low, committed, retained = await trio.to_thread.run_sync(
        _open_sync, path, partitions, group_tuple, bytes_limit
    )
    wal = EmbeddedWal(db_path, identity, conn, partitions, group_tuple, bytes_limit, end, low, committed, retained)
    return wal
