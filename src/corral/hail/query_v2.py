"""Hail's query language v2 for jobs and batches: one statement per line, all must hold.

A statement is `FIELD OP VALUE` with OP one of `= == != > >= < <= =~ !~`, or a single word matched
as a substring of any attribute key or value. Fields for jobs: job_id, state, cost, duration (seconds),
name, user; for batches: batch_id, state, cost, duration, user, billing_project. Any other field
is an attribute key (compared as text; =~ and !~ are regular expressions).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from corral.api.convert import job_duration_ms
from corral.api.query import BATCH_STATE_WORDS, JOB_STATE_WORDS
from corral.domain.states import JobState
from corral.errors import InvalidInput
from corral.store.batches import BatchRecord
from corral.store.jobs_read import JobRecord

OPS = ("==", "!=", ">=", "<=", "=~", "!~", "=", ">", "<")
_STATEMENT = re.compile(r"^\s*(\S+?)\s*(==|!=|>=|<=|=~|!~|=|>|<)\s*(.*?)\s*$")
Check = Callable[[Any], bool]


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "=="):
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None:
        return False
    return bool({">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op])


def _number(value: str, field: str, line: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"q: {line!r}: {field} needs a number, not {value!r}", field="q") from None


def _regex(value: str, line: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise InvalidInput(f"q: {line!r}: bad regular expression ({exc})", field="q") from None


def _text_check(get: Callable[[Any], str | None], op: str, value: str, line: str) -> Check:
    if op in ("=~", "!~"):
        pattern = _regex(value, line)
        want = op == "=~"
        return lambda r: (get(r) is not None and pattern.search(get(r) or "") is not None) == want
    if op not in ("=", "==", "!="):
        raise InvalidInput(f"q: {line!r}: text compares with = != =~ !~ only", field="q")
    return lambda r: _compare(op, get(r), value)


def _number_check(get: Callable[[Any], float | None], op: str, value: str, field: str, line: str) -> Check:
    if op in ("=~", "!~"):
        raise InvalidInput(f"q: {line!r}: {field} is a number; use = != > >= < <=", field="q")
    number = _number(value, field, line)
    return lambda r: _compare(op, get(r), number)


def _word_check(word: str) -> Check:
    return lambda r: any(word in k or word in v for k, v in r.attributes.items())


def _job_state_check(op: str, value: str, line: str) -> Check:
    states = JOB_STATE_WORDS.get(value.lower())
    if states is None or op not in ("=", "==", "!="):
        raise InvalidInput(
            f"q: {line!r}: state compares with = or != to one of {', '.join(sorted(JOB_STATE_WORDS))}",
            field="q",
        )
    want = op != "!="
    return lambda j: (JobState(j.state) in states) == want


def _job_statement(field: str, op: str, value: str, line: str) -> Check:
    if field == "state":
        return _job_state_check(op, value, line)
    if field == "job_id":
        return _number_check(lambda j: j.job_id, op, value, field, line)
    if field == "cost":
        return _number_check(lambda j: j.cost, op, value, field, line)
    if field == "duration":
        return _number_check(_job_seconds, op, value, field, line)
    if field == "user":
        return _text_check(lambda j: j.user, op, value, line)
    if field == "name":
        return _text_check(lambda j: j.name, op, value, line)
    return _text_check(lambda j: j.attributes.get(field), op, value, line)


def _job_seconds(job: JobRecord) -> float | None:
    ms = job_duration_ms(job.status)
    return None if ms is None else ms / 1000


def _batch_state_check(op: str, value: str, line: str) -> Check:
    word = BATCH_STATE_WORDS.get(value.lower())
    if word is None or op not in ("=", "==", "!="):
        raise InvalidInput(
            f"q: {line!r}: state compares with = or != to one of {', '.join(sorted(BATCH_STATE_WORDS))}",
            field="q",
        )
    want = op != "!="
    return lambda b: word(b) == want


def _batch_statement(field: str, op: str, value: str, line: str) -> Check:
    if field == "state":
        return _batch_state_check(op, value, line)
    if field in ("batch_id", "id"):
        return _number_check(lambda b: b.id, op, value, field, line)
    if field == "cost":
        return _number_check(lambda b: b.cost, op, value, field, line)
    if field in ("user", "billing_project"):
        return _text_check(lambda b: getattr(b, field), op, value, line)
    return _text_check(lambda b: b.attributes.get(field), op, value, line)


def _parse(q: str, statement: Callable[[str, str, str, str], Check]) -> list[Check]:
    checks: list[Check] = []
    for raw in q.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _STATEMENT.match(line)
        if match is None:
            if len(line.split()) == 1:
                checks.append(_word_check(line))
                continue
            raise InvalidInput(
                f"q: cannot understand {line!r}; write one statement per line as FIELD OP VALUE "
                f"with OP one of {' '.join(OPS)}, or a single word",
                field="q",
            )
        field, op, value = match.groups()
        if not value:
            raise InvalidInput(f"q: {line!r} has no value after {op!r}", field="q")
        checks.append(statement(field, op, value.strip("\"'"), line))
    return checks


def job_predicate_v2(q: str | None) -> Callable[[JobRecord], bool] | None:
    if not q or not q.strip():
        return None
    checks = _parse(q, _job_statement)
    return lambda job: all(check(job) for check in checks)


def batch_predicate_v2(q: str | None) -> Callable[[BatchRecord], bool] | None:
    if not q or not q.strip():
        return None
    checks = _parse(q, _batch_statement)
    return lambda batch: all(check(batch) for check in checks)
