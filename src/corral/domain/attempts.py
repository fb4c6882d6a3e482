"""Decisions about attempts: when they really started and ended, and what a lost one means for its job."""

from __future__ import annotations

from dataclasses import dataclass

from corral.domain.states import JobState


def clamp_time(reported: float, earliest: float, latest: float) -> float:
    """A worker's clock is not the truth: its times are kept inside the driver's window for the attempt
    (not before it was assigned or started, not after the driver heard of it)."""
    return min(max(reported, earliest), max(earliest, latest))


@dataclass(frozen=True, slots=True)
class LostAttemptDecision:
    job_state: JobState  # READY (retry) or ERROR (no attempts left)
    error: str | None  # why the job ended, when it did


# An attempt its worker gave back without starting it (it waited in the worker's queue, driver/lookahead.py):
# the job runs again, and the attempt does not count against n_max_attempts.
RETURNED = "returned"


def after_lost_attempt(
    attempt_id: int, end_reason: str, n_counted: int, n_max_attempts: int
) -> LostAttemptDecision:
    """An attempt lost with its instance returns the job to Ready until it has used n_max_attempts
    (`n_counted`: its attempts so far, this one included, less those given back); one given back always
    returns it to Ready."""
    if end_reason == RETURNED or n_counted < n_max_attempts:
        return LostAttemptDecision(JobState.READY, None)
    return LostAttemptDecision(
        JobState.ERROR,
        f"attempt {attempt_id} was {end_reason}; no attempts left (n_max_attempts={n_max_attempts})",
    )
