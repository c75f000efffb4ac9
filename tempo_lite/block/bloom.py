"""A trace-ID bloom filter, vectorised with numpy (no per-ID Python work when building)."""

from __future__ import annotations

import math
import struct

import numpy as np

_MAGIC = b"TLBF1"
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads Zipkin-style IDs (high half zero) over all bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


_MASK = (1 << 64) - 1


def _mix_int(x: int) -> int:
    """`_mix` on one Python int (wrapping like uint64)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _hashes(trace_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """trace_ids: (n, 16) uint8 -> two independent 64-bit hashes per ID."""
    halves = np.ascontiguousarray(trace_ids).view(np.uint64).reshape(-1, 2)
    with np.errstate(over="ignore"):
        h1 = _mix(halves[:, 0] ^ _mix(halves[:, 1]))
        h2 = _mix(h1 ^ np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    return h1, h2


class BloomFilter:
    def __init__(self, bits: np.ndarray, k: int) -> None:
        self.bits = bits  # uint8 array, little-endian bit order
        self._bytes = bits.tobytes()
        self.k = k
        self.m = len(bits) * 8

    @classmethod
    def build(cls, trace_ids: np.ndarray, false_positive: float = 0.01) -> BloomFilter:
        n = max(1, len(trace_ids))
        m = max(64, int(-n * math.log(false_positive) / (math.log(2) ** 2)))
        m = (m + 7) // 8 * 8
        k = max(1, round(m / n * math.log(2)))
        bits = np.zeros(m // 8, dtype=np.uint8)
        if len(trace_ids):
            h1, h2 = _hashes(trace_ids)
            with np.errstate(over="ignore"):
                for i in range(k):
                    pos = (h1 + np.uint64(i) * h2) % np.uint64(m)
                    np.bitwise_or.at(bits, (pos >> np.uint64(3)).astype(np.int64),
                                     (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))
        return cls(bits, k)

    def may_contain(self, trace_id: bytes) -> bool:
        # Plain Python ints: the same hashes as `_hashes`, without numpy's per-scalar overhead
        # (measured 140 us -> ~5 us per check; a lookup checks every candidate block).
        lo, hi = struct.unpack("<QQ", trace_id)
        h1 = _mix_int(lo ^ _mix_int(hi))
        h2 = _mix_int(h1 ^ 0x9E3779B97F4A7C15) | 1
        bits, m = self._bytes, self.m
        for i in range(self.k):
            pos = ((h1 + i * h2) & _MASK) % m
            if not bits[pos >> 3] & (1 << (pos & 7)):
                return False
        return True

    def to_bytes(self) -> bytes:
        return _MAGIC + struct.pack("<IQ", self.k, self.m) + self.bits.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BloomFilter:
        if not data.startswith(_MAGIC):
            raise ValueError("not a tempo-lite bloom filter")
        k, m = struct.unpack_from("<IQ", data, len(_MAGIC))
        bits = np.frombuffer(data, dtype=np.uint8, offset=len(_MAGIC) + 12)
        if len(bits) * 8 != m:
            raise ValueError("truncated bloom filter")
        return cls(bits, k)
