"""A version's parameter table in one Parquet file with one row group per chunk, so that a sweep read
back from storage (the CLI, another machine) gets a chunk's rows with one row-group read instead of
opening the chunk's own input file."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corral.sweeps import storage


def write_params(url: str, table: pa.Table, chunk_size: int) -> None:
    if storage.exists(url):
        return
    sink = pa.BufferOutputStream()
    # Many small row groups: no compression, statistics or dictionaries (5x faster to write).
    pq.write_table(table, sink, row_group_size=chunk_size, compression="none", write_statistics=False,
                   use_dictionary=False)
    storage.write_atomically(url, sink.getvalue().to_pybytes())


class ParamsFile:
    """Row group i = chunk i's parameter rows; None from read() when the file does not fit the chunks."""

    def __init__(self, url: str, n_chunks: int) -> None:
        self.url = url
        self.n_chunks = n_chunks
        self._lock = threading.Lock()
        self._handle: Any = None
        self._file: pq.ParquetFile | None = None
        self._usable: bool | None = None

    def read(self, index: int) -> pa.Table | None:
        with self._lock:  # one open file shared by the merge's reader threads
            if self._usable is None:
                try:
                    fs, path = storage.filesystem(self.url)
                    self._handle = fs.open(path, "rb")
                    self._file = pq.ParquetFile(self._handle)
                    self._usable = self._file.metadata.num_row_groups == self.n_chunks
                except (OSError, pa.ArrowException):
                    self._usable = False
            if not self._usable or self._file is None:
                return None
            return self._file.read_row_group(index)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
            self._handle = self._file = None
            self._usable = None
