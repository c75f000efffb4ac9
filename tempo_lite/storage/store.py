"""`ObjectStore`: the raw read/write interface to blocks, the same for every fsspec backend.

All fsspec calls are blocking, so each runs in a worker thread under one `CapacityLimiter`: object
store calls run concurrently, bounded. Paths are relative to the store's root ("tenant/block/file").
Every failure surfaces as `StorageError` (or `ObjectNotFound`), naming the backend and the object.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from typing import Any

import fsspec
import trio

from tempo_lite.errors import StorageError


class ObjectNotFound(StorageError):
    """The object does not exist (a missing block file, not an outage)."""

    http_status = 404


class ObjectStore:
    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, *, name: str, concurrency: int = 16):
        self.fs = fs
        self.root = root.rstrip("/")
        self.name = name
        self.limiter = trio.CapacityLimiter(concurrency)
        # Only a local disk needs parent folders; on object stores `makedirs` costs a round trip
        # (s3fs even checks, and may try to create, the bucket).
        self._is_local = "file" in _protocols(fs)
        # Bytes fetched from the store (whole reads, range reads, reads through open_sync files): shown on
        # /metrics and used by tests and benchmarks to prove queries read only what they need.
        self.bytes_read = 0
        self._count_lock = threading.Lock()

    def count_read(self, nbytes: int) -> None:
        with self._count_lock:
            self.bytes_read += nbytes

    def __repr__(self) -> str:
        return f"ObjectStore(name={self.name!r}, root={self.root!r})"

    def full_path(self, path: str) -> str:
        return f"{self.root}/{path.lstrip('/')}" if self.root else path.lstrip("/")

    async def _run(self, what: str, path: str, fn: Any, *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{self.name}: {path} not found") from exc
        except StorageError:
            raise
        except Exception as exc:  # every backend raises its own exception family
            raise StorageError(f"{self.name}: {what} {path} failed: {type(exc).__name__}: {exc}") from exc

    # --- sync primitives (run in threads; also used directly by pyarrow readers in threads) ---
    def write_sync(self, path: str, data: bytes) -> None:
        """Store `data` at `path`, replacing any previous object; readers never see a partial object."""
        full = self.full_path(path)
        if self._is_local:
            # Object stores publish a PUT atomically; on disk, write a sibling then rename over.
            parent = os.path.dirname(full)
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, f".{os.path.basename(full)}.{uuid.uuid4().hex}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, full)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            return
        self.fs.pipe_file(full, bytes(data))

    def read_sync(self, path: str) -> bytes:
        data = self.fs.cat_file(self.full_path(path))
        self.count_read(len(data))
        return data

    def read_range_sync(self, path: str, offset: int, length: int | None = None) -> bytes:
        """`length` bytes from `offset` (fewer at the end of the object); `None` reads to the end."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        full = self.full_path(path)
        if length is None:
            data = self.fs.cat_file(full, start=offset)
        elif length == 0:
            self.fs.size(full)  # still report a missing object
            return b""
        else:
            data = self.fs.cat_file(full, start=offset, end=offset + length)
        self.count_read(len(data))
        return data

    def open_sync(self, path: str, *, cache_type: str = "none") -> io.RawIOBase:
        """A seekable file object doing range reads (for pyarrow.parquet.ParquetFile).

        `cache_type="none"` makes every read exactly one range request of the bytes asked for, so
        reading a Parquet footer and one column chunk never pulls the whole object (the fsspec
        default read-ahead block is 5-50 MB).
        """
        full = self.full_path(path)
        if self._is_local or "memory" in _protocols(self.fs):
            f = self.fs.open(full, "rb")
        else:
            f = self.fs.open(full, "rb", cache_type=cache_type)
        return _CountingReader(f, self.count_read)

    def size_sync(self, path: str) -> int:
        return int(self.fs.size(self.full_path(path)))

    def list_sync(self, prefix: str) -> list[str]:
        """Names of the direct children of `prefix` (files and folders), sorted; [] if absent."""
        full = self.full_path(prefix).rstrip("/")
        try:
            entries = self.fs.ls(full, detail=False)
        except FileNotFoundError:
            return []
        names = set()
        for entry in entries:
            entry = entry.rstrip("/")
            if entry == full:
                continue  # some backends list a file as its own only child
            names.add(entry.rsplit("/", 1)[-1])
        names.discard("")
        if self._is_local:
            names = {n for n in names if not (n.startswith(".") and n.endswith(".tmp"))}
        return sorted(names)

    def delete_sync(self, path: str) -> None:
        """Remove an object, or everything under a prefix; absent paths are not an error."""
        full = self.full_path(path)
        try:
            self.fs.rm(full, recursive=True)
        except FileNotFoundError:
            return

    def exists_sync(self, path: str) -> bool:
        return bool(self.fs.exists(self.full_path(path)))

    # --- async API ---
    async def write(self, path: str, data: bytes) -> None:
        await self._run("write", path, self.write_sync, path, data)

    async def read(self, path: str) -> bytes:
        return await self._run("read", path, self.read_sync, path)

    async def read_range(self, path: str, offset: int, length: int | None = None) -> bytes:
        return await self._run("range read", path, self.read_range_sync, path, offset, length)

    async def size(self, path: str) -> int:
        return await self._run("size", path, self.size_sync, path)

    async def list(self, prefix: str) -> list[str]:
        return await self._run("list", prefix, self.list_sync, prefix)

    async def delete(self, path: str) -> None:
        await self._run("delete", path, self.delete_sync, path)

    async def exists(self, path: str) -> bool:
        return await self._run("exists", path, self.exists_sync, path)


class _CountingReader(io.RawIOBase):
    """A read-only seekable file that reports how many bytes were read through it."""

    def __init__(self, inner: Any, count: Any) -> None:
        self._inner = inner
        self._count = count

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    @property
    def size(self) -> int:
        return self._inner.size

    def close(self) -> None:
        self._inner.close()
        super().close()


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def local_store(path: str) -> ObjectStore:
    os.makedirs(path, exist_ok=True)
    return ObjectStore(fsspec.filesystem("file", auto_mkdir=True), os.path.abspath(path), name="local")


def memory_store(root: str | None = None) -> ObjectStore:
    """An in-process store. Every MemoryFileSystem shares one class-level dict, so without an
    explicit `root` each store gets a unique root and is isolated; stores given the same `root`
    see the same objects (like a process restart against the same bucket)."""
    if root is None:
        root = f"/tempo-{uuid.uuid4().hex[:12]}"
    return ObjectStore(fsspec.filesystem("memory", skip_instance_cache=True), root, name="memory")
