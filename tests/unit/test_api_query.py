"""The v1 query parser and the error field paths (pure, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from corral.api.errors import field_path
from corral.api.query import batch_predicate, job_predicate, job_states, parse_terms
from corral.domain.states import JobState
from corral.errors import InvalidInput
from corral.store.batches import BatchRecord
from corral.store.jobs_read import JobRecord

BATCH = BatchRecord(
    id=1,
    user="alice",
    billing_project="default",
    token="t",
    attributes={"kind": "sweep"},
    state="running",
    closed=True,
    cancelled=False,
    deleted=False,
    cancel_after_n_failures=None,
    callback=None,
    n_jobs=2,
    n_completed=1,
    n_succeeded=1,
    n_failed=0,
    n_cancelled=0,
    msec_mcpu=0,
    cost=0.0,
    time_created=0.0,
    time_closed=1.0,
    time_completed=None,
)
JOB = JobRecord(
    batch_id=1,
    job_id=3,
    update_id=1,
    user="alice",
    name=None,
    state="Failed",
    pool="default",
    cores_mcpu=1000,
    memory_bytes=1,
    storage_bytes=0,
    always_run=False,
    n_max_attempts=1,
    n_attempts=1,
    exit_code=1,
    status=None,
    msec_mcpu=0,
    cost=0.0,
    time_created=0.0,
    time_completed=1.0,
    attributes={"chunk": "7"},
)


def test_terms_are_attributes_presence_users_and_states_with_negation() -> None:
    terms = parse_terms("k=v=w !has:x user:bob running", {"running"})
    assert [(t.kind, t.key, t.value, t.negate) for t in terms] == [
        ("attr", "k", "v=w", False),
        ("has", "x", None, True),
        ("user", "bob", None, False),
        ("state", "running", None, False),
    ]


def test_unknown_word_is_invalid_input_naming_q() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_terms("bogus", {"running"})
    assert info.value.field == "q"


def test_batch_predicate() -> None:
    assert batch_predicate(None) is None and batch_predicate("  ") is None
    assert batch_predicate("kind=sweep running user:alice")(BATCH)  # type: ignore[misc]
    assert not batch_predicate("complete")(BATCH)  # type: ignore[misc]
    assert batch_predicate("!cancelled !open")(BATCH)  # type: ignore[misc]
    assert batch_predicate("complete success")(replace(BATCH, n_completed=2, state="success"))  # type: ignore[misc]


def test_job_predicate_and_state_groups() -> None:
    assert job_predicate("chunk=7 failed bad done")(JOB)  # type: ignore[misc]
    assert not job_predicate("!bad")(JOB)  # type: ignore[misc]
    assert job_states("done") == {JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED}
    assert job_states("Ready,running") == {JobState.READY, JobState.RUNNING}
    assert job_states(None) is None
    with pytest.raises(InvalidInput):
        job_states("asleep")


def test_field_paths_name_the_job_index() -> None:
    assert field_path(("body", "bunch", 3, "resources", "cpu")) == "bunch[3].resources.cpu"
    assert field_path(("body", 2, "process")) == "bunch[2].process"
    assert field_path(("body", "batch", "token")) == "batch.token"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(()) == "body"
