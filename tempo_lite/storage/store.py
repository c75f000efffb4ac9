"""`ObjectStore`: the raw read/write interface to blocks, the same for every fsspec backend.

All fsspec calls are blocking, so each runs in a worker thread under one `CapacityLimiter`: object
store calls run concurrently, bounded. Paths are relative to the store's root ("tenant/block/file").
"""

from __future__ import annotations

from typing import Any, BinaryIO

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
        full = self.full_path(path)
        parent = full.rsplit("/", 1)[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(full, "wb") as f:
            f.write(data)

    def read_sync(self, path: str) -> bytes:
        return self.fs.cat_file(self.full_path(path))

    def read_range_sync(self, path: str, offset: int, length: int) -> bytes:
        return self.fs.cat_file(self.full_path(path), start=offset, end=offset + length)

    def open_sync(self, path: str) -> BinaryIO:
        """A seekable file object doing range reads (for pyarrow.parquet.ParquetFile)."""
        return self.fs.open(self.full_path(path), "rb")

    def size_sync(self, path: str) -> int:
        return int(self.fs.size(self.full_path(path)))

    def list_sync(self, prefix: str) -> list[str]:
        """Names of the direct children of `prefix` (files and folders), sorted; [] if absent."""
        full = self.full_path(prefix)
        try:
            entries = self.fs.ls(full, detail=False)
        except FileNotFoundError:
            return []
        names = {e.rstrip("/").rsplit("/", 1)[-1] for e in entries}
        names.discard("")
        return sorted(names)

    def delete_sync(self, path: str) -> None:
        full = self.full_path(path)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    def exists_sync(self, path: str) -> bool:
        return bool(self.fs.exists(self.full_path(path)))

    # --- async API ---
    async def write(self, path: str, data: bytes) -> None:
        await self._run("write", path, self.write_sync, path, data)

    async def read(self, path: str) -> bytes:
        return await self._run("read", path, self.read_sync, path)

    async def read_range(self, path: str, offset: int, length: int) -> bytes:
        return await self._run("range read", path, self.read_range_sync, path, offset, length)

    async def size(self, path: str) -> int:
        return await self._run("size", path, self.size_sync, path)

    async def list(self, prefix: str) -> list[str]:
        return await self._run("list", prefix, self.list_sync, prefix)

    async def delete(self, path: str) -> None:
        await self._run("delete", path, self.delete_sync, path)

    async def exists(self, path: str) -> bool:
        return await self._run("exists", path, self.exists_sync, path)


def local_store(path: str) -> ObjectStore:
    import os

    os.makedirs(path, exist_ok=True)
    return ObjectStore(fsspec.filesystem("file", auto_mkdir=True), os.path.abspath(path), name="local")


def memory_store(root: str = "/tempo") -> ObjectStore:
    return ObjectStore(fsspec.filesystem("memory", skip_instance_cache=True), root, name="memory")
