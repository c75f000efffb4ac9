"""`Footer`: a data.parquet footer and what readers derive from it once (cached with the block)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Footer:
    """A data.parquet footer with what readers derive from it: the first row of each row group, and per
    row group and leaf column the compressed chunk size (bytes-read accounting without walking the
    footer on every read). Chunk sizes are filled in per row group on first use: a trace-by-ID lookup
    touches one or two groups, and walking every column chunk of a 500-group footer in Python costs
    tens of milliseconds when a block is first opened."""

    metadata: pq.FileMetaData
    paths: tuple[str, ...]  # leaf column paths
    names: tuple[str, ...]  # top-level column names (a dedicated column's name holds dots)
    group_first: np.ndarray  # (row groups + 1,) int64: first row of each group, then the row count
    _sizes: np.ndarray = field(repr=False)  # (row groups, leaf columns) int64; row g valid if _known[g]
    _known: np.ndarray = field(repr=False)  # (row groups,) bool
    _column_masks: dict[tuple[str, ...] | None, np.ndarray] = field(default_factory=dict, repr=False)
    _statistics: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = field(default_factory=dict,
                                                                                     repr=False)
    _leaves: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, md: pq.FileMetaData) -> Footer:
        n_rg, n_col = md.num_row_groups, md.num_columns
        rows = np.zeros(n_rg + 1, dtype=np.int64)
        for i in range(n_rg):
            rows[i + 1] = md.row_group(i).num_rows
        paths = tuple(md.schema.column(j).path for j in range(n_col))
        names = tuple(md.schema.to_arrow_schema().names)
        footer = cls(md, paths, names, np.cumsum(rows), np.zeros((n_rg, n_col), dtype=np.int64),
                     np.zeros(n_rg, dtype=bool))
        # Leaf column indices under every column path prefix (what pyarrow's ParquetFile builds on every
        # open; here once per footer).
        for i, path in enumerate(paths):
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                footer._leaves.setdefault(".".join(parts[:k]), []).append(i)
        return footer

    @property
    def num_rows(self) -> int:
        return int(self.group_first[-1])

    @property
    def num_row_groups(self) -> int:
        return len(self.group_first) - 1

    def chunk_sizes(self, row_groups: list[int] | None = None) -> np.ndarray:
        """Compressed size of every column chunk of the given row groups (None: all), (groups, leaves)."""
        groups = np.arange(self.num_row_groups) if row_groups is None else np.asarray(row_groups, dtype=np.int64)
        for g in groups[~self._known[groups]].tolist():
            rg = self.metadata.row_group(g)
            self._sizes[g] = [rg.column(j).total_compressed_size for j in range(len(self.paths))]
            self._known[g] = True
        return self._sizes[groups]

    def groups_of_rows(self, lo: int, hi: int) -> list[int]:
        """The row groups holding rows [lo, hi) (hi > lo)."""
        first = int(np.searchsorted(self.group_first, lo, side="right")) - 1
        last = int(np.searchsorted(self.group_first, hi - 1, side="right")) - 1
        return list(range(first, last + 1))

    def statistics(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Row-group (min, max, known) arrays of a top-level column (None: no such column), read from
        the footer once. Groups without statistics are `known` False (their min/max are placeholders)."""
        if column not in self._statistics:
            j = self.paths.index(column) if column in self.paths else -1
            if j < 0:
                self._statistics[column] = None
                return None
            n = self.num_row_groups
            lows: list[object] = [None] * n
            highs: list[object] = [None] * n
            known = np.zeros(n, dtype=bool)
            for i in range(n):
                st = self.metadata.row_group(i).column(j).statistics
                if st is not None and st.has_min_max:
                    lows[i], highs[i], known[i] = st.min, st.max, True
            fill = next((v for v in lows if v is not None), 0)
            lo = np.array([fill if v is None else v for v in lows])
            hi = np.array([fill if v is None else v for v in highs])
            self._statistics[column] = (lo, hi, known)
        return self._statistics[column]

    def column_indices(self, columns: list[str] | None) -> list[int] | None:
        if columns is None:
            return None
        return [i for c in columns for i in self._leaves.get(c, ())]

    def read_bytes(self, row_groups: list[int] | None, columns: list[str] | None) -> int:
        """Compressed bytes of the given row groups (None: all) and columns (None: all; a column
        counts all its leaves, "attrs", or just one, "attrs.list.element.key")."""
        key = None if columns is None else tuple(columns)
        mask = self._column_masks.get(key)
        if mask is None:
            mask = np.array([key is None or any(p == c or p.startswith(c + ".") for c in key) for p in self.paths],
                            dtype=bool)
            self._column_masks[key] = mask
        return int(self.chunk_sizes(row_groups)[:, mask].sum())

    @property
    def nbytes(self) -> int:
        return self.metadata.serialized_size * 2 + self._sizes.nbytes + 256
