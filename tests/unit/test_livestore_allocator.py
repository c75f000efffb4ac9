"""`tempo-lite serve` tunes the allocators at start-up so freed buffers leave the process: on glibc the
mallopt settings apply and Arrow allocates through malloc, unless the user chose an Arrow pool."""

from __future__ import annotations

import platform

import pyarrow as pa
import pytest

from tempo_lite.livestore import allocator


@pytest.fixture
def arrow_pool() -> object:
    before = pa.default_memory_pool()
    yield before
    pa.set_memory_pool(before)


def test_tune_puts_arrow_on_malloc_on_glibc(arrow_pool: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    tuning = allocator.tune()
    if platform.libc_ver()[0] != "glibc":
        assert not tuning.glibc
        return
    assert tuning.glibc
    assert tuning.arrow_pool == "system" == pa.default_memory_pool().backend_name
    assert pa.array([1, 2, 3]).sum().as_py() == 6  # Arrow still works on the system pool


def test_an_arrow_pool_chosen_in_the_environment_is_kept(arrow_pool: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    before = pa.default_memory_pool().backend_name
    assert allocator.tune().arrow_pool == before
