"""Hail's v1 query language for listing batches and jobs: space-separated terms, all must hold.

`k=v` (attribute equals), `has:k` (attribute present), `user:u`, `billing_project:p`, a state word,
and `!` before any term to negate it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from corral.domain.states import COMPLETE_STATES, FAILURE_STATES, JobState
from corral.errors import InvalidInput
from corral.store.batches import BatchRecord
from corral.store.jobs_read import JobRecord

T = TypeVar("T")
Predicate = Callable[[T], bool]

JOB_STATE_WORDS: dict[str, frozenset[JobState]] = {
    **{state.value.lower(): frozenset({state}) for state in JobState},
    "live": frozenset({JobState.READY, JobState.RUNNING}),
    "running": frozenset({JobState.RUNNING}),
    "bad": FAILURE_STATES,
    "done": COMPLETE_STATES,
    "complete": COMPLETE_STATES,
}
BATCH_STATE_WORDS: dict[str, Predicate[BatchRecord]] = {
    "open": lambda b: not b.closed,
    "closed": lambda b: b.closed,
    "complete": lambda b: b.complete,
    "running": lambda b: b.closed and not b.complete and not b.cancelled,
    "cancelled": lambda b: b.cancelled,
    "failure": lambda b: b.state == "failure",
    "success": lambda b: b.state == "success",
}


@dataclass(frozen=True, slots=True)
class Term:
    kind: str  # attr | has | user | billing_project | state
    key: str
    value: str | None
    negate: bool


def parse_terms(q: str, state_words: set[str], *, field: str = "q") -> list[Term]:
    terms: list[Term] = []
    for raw in q.split():
        negate = raw.startswith("!")
        word = raw[1:] if negate else raw
        if "=" in word:
            key, value = word.split("=", 1)
            terms.append(Term("attr", key, value, negate))
        elif word.startswith(("has:", "user:", "billing_project:")):
            kind, key = word.split(":", 1)
            terms.append(Term(kind, key, None, negate))
        elif word.lower() in state_words:
            terms.append(Term("state", word.lower(), None, negate))
        else:
            raise InvalidInput(
                f"{field}: cannot understand {raw!r}; use k=v, has:k, user:name, billing_project:name or one "
                f"of the states {', '.join(sorted(state_words))}, each optionally prefixed by '!'",
                field=field,
            )
    return terms


def _matches(term: Term, attributes: dict[str, str], user: str, billing_project: str | None) -> bool | None:
    """The common terms; None for a state term (the caller decides)."""
    if term.kind == "attr":
        return attributes.get(term.key) == term.value
    if term.kind == "has":
        return term.key in attributes
    if term.kind == "user":
        return user == term.key
    if term.kind == "billing_project":
        return billing_project == term.key
    return None


def batch_predicate(q: str | None) -> Predicate[BatchRecord] | None:
    if not q or not q.strip():
        return None
    terms = parse_terms(q, set(BATCH_STATE_WORDS))

    def predicate(batch: BatchRecord) -> bool:
        for term in terms:
            hit = _matches(term, batch.attributes, batch.user, batch.billing_project)
            if hit is None:
                hit = BATCH_STATE_WORDS[term.key](batch)
            if hit == term.negate:
                return False
        return True

    return predicate


def job_predicate(q: str | None) -> Predicate[JobRecord] | None:
    if not q or not q.strip():
        return None
    terms = parse_terms(q, set(JOB_STATE_WORDS))

    def predicate(job: JobRecord) -> bool:
        for term in terms:
            hit = _matches(term, job.attributes, job.user, None)
            if hit is None:
                hit = JobState(job.state) in JOB_STATE_WORDS[term.key]
            if hit == term.negate:
                return False
        return True

    return predicate


def job_states(state: str | None, *, field: str = "state") -> frozenset[JobState] | None:
    """The `state=` filter: comma-separated state words or groups (done, live, running, bad)."""
    if not state:
        return None
    found: set[JobState] = set()
    for word in state.split(","):
        group = JOB_STATE_WORDS.get(word.strip().lower())
        if group is None:
            raise InvalidInput(
                f"{field}: unknown job state {word!r}; use {', '.join(sorted(JOB_STATE_WORDS))}", field=field
            )
        found |= group
    return frozenset(found)
