"""What a sweep's status says: counts per chunk state and the chunks that failed (rows, error, log)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ChunkFailure:
    index: int
    key: str
    rows: str  # "200-299"
    error: str
    batch_id: int | None = None
    job_id: int | None = None
    attempts: int = 0  # jobs run for this chunk so far (all runs)

    @property
    def log(self) -> str | None:
        if self.batch_id is None or self.job_id is None:
            return None
        return f"corral job log {self.batch_id} {self.job_id}"


@dataclass
class SweepStatus:
    name: str
    version: str
    storage: str  # where chunk files and results live
    merged_dir: str  # the merged dataset (a directory of Parquet parts)
    n_chunks: int
    n_rows: int
    merged: int = 0  # chunks whose rows are in the merged dataset
    unmerged: int = 0  # valid result, waiting for the next merge
    running: int = 0  # a live job on the server
    failed: int = 0
    waiting: int = 0  # never run, or not yet submitted
    merged_rows: int = 0
    batches: list[int] = field(default_factory=list)
    failures: list[ChunkFailure] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.merged == self.n_chunks

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        for f, failure in zip(data["failures"], self.failures, strict=True):
            f["log"] = failure.log
        return data

    def summary(self) -> str:
        return (f"sweep {self.name} ({self.version}): {self.merged}/{self.n_chunks} chunks merged "
                f"({self.merged_rows:,} rows), {self.running} running, {self.failed} failed, "
                f"{self.waiting + self.unmerged} waiting")
