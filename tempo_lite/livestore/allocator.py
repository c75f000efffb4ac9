"""Process allocator settings that make freed memory leave the process (docs/reliability.md, "Memory").

Measured under sustained ingest (bench/ingest_memory.py, glibc 2.36): the span tables the live-store
decodes are mostly Python `bytes` and numpy buffers, allocated with glibc malloc from several threads
(decoding and block encoding run in trio worker threads). glibc raises its mmap threshold dynamically
up to 32 MiB, so every multi-megabyte buffer came from a heap arena and stayed there when freed:
300-450 MiB of free memory were kept in the arenas (`mallinfo2().fordblks`) while ~200 MiB were in
use. A fixed threshold makes buffers above it mmapped and returned to the system at `free`; fewer
arenas keep the small-object fragmentation in fewer places. pyarrow's own pool (mimalloc in pyarrow
26) kept what block encoding freed (~100 MiB per block) as well; Arrow buffers go through malloc too
(`pa.system_memory_pool()`), so the same threshold returns them.

Peak RSS of the 40 s ingest benchmark, each change alone on top of the glibc settings: mimalloc
575-637 MiB (also with `MIMALLOC_PURGE_DELAY=0`), system pool 447 MiB; without any: 683-760 MiB.

`trim()` (glibc `malloc_trim(0)`) gives the free pages inside the arenas back as well, not only the
heap's top: the live-store's memory watch calls it while the process is above its bound (after a
flush released segments, 50-130 MiB of arena memory were free but resident; one call took 0.1-12 ms,
once 180 ms in a 40 s run, in a worker thread so the event loop does not wait for it).

`tune()` is called once at start-up by `tempo-lite serve`, before any worker thread exists (arenas
are per thread). The glibc part is a no-op elsewhere (musl, macOS). Setting ARROW_DEFAULT_MEMORY_POOL
in the environment keeps the Arrow pool the user chose.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
from dataclasses import dataclass

import pyarrow as pa

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept fixed (no dynamic raise)
TRIM_THRESHOLD_BYTES = 1 << 20  # give the heap's free top back above 1 MiB
ARENA_MAX = 2  # the machine's cores: the decode and encode threads


@dataclass(frozen=True)
class Tuning:
    glibc: bool  # mallopt applied
    arrow_pool: str  # the Arrow pool in use afterwards


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError as exc:
        log.warning("cannot load the C library: %s", exc)
        return None


def trim() -> bool:
    """Give free memory inside glibc's arenas back to the system; False where there is no glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def tune() -> Tuning:
    """Set the allocator parameters above; returns which allocators were tuned."""
    glibc = False
    libc = _libc()
    if libc is not None:
        try:
            glibc = all(libc.mallopt(param, value) == 1 for param, value in (
                (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                (M_ARENA_MAX, ARENA_MAX),
            ))
        except AttributeError as exc:
            log.warning("cannot tune glibc malloc: %s", exc)
    if glibc and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    return Tuning(glibc, pa.default_memory_pool().backend_name)

