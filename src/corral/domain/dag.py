"""Validation of the job graph of one update: ids in range, parents that exist, no cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from corral.errors import InvalidInput


def check_job_ids(job_ids: Sequence[int], n_jobs: int, *, field: str = "jobs") -> None:
    """Job ids of an update are exactly 1..n_jobs, each once."""
    seen: set[int] = set()
    for index, job_id in enumerate(job_ids):
        if not 1 <= job_id <= n_jobs:
            raise InvalidInput(
                f"{field}[{index}].job_id: {job_id} is out of range; job ids in this update go from 1 to "
                f"{n_jobs}",
                field=f"{field}[{index}].job_id",
            )
        if job_id in seen:
            raise InvalidInput(
                f"{field}[{index}].job_id: {job_id} appears twice; give every job its own id",
                field=f"{field}[{index}].job_id",
            )
        seen.add(job_id)


def check_parents(
    parents: Mapping[int, Iterable[int]],
    known_ids: set[int],
    *,
    field: str = "jobs",
) -> None:
    """Every parent names a job of the update (in-update ids); the graph has no cycle."""
    for job_id, parent_ids in parents.items():
        for parent_id in parent_ids:
            if parent_id == job_id:
                raise InvalidInput(
                    f"{field}: job {job_id} lists itself as a parent; remove it from parent_ids",
                    field=f"{field}.parent_ids",
                )
            if parent_id not in known_ids:
                raise InvalidInput(
                    f"{field}: job {job_id} has unknown parent {parent_id}; parent_ids must name jobs of "
                    "this update (or absolute_parent_ids jobs of the batch)",
                    field=f"{field}.parent_ids",
                )
    cycle = find_cycle(parents)
    if cycle:
        path = " -> ".join(str(j) for j in cycle)
        raise InvalidInput(
            f"{field}: the jobs form a cycle ({path}); a job cannot depend on its own descendants",
            field=f"{field}.parent_ids",
        )


def find_cycle(parents: Mapping[int, Iterable[int]]) -> list[int] | None:
    """A cycle in the parent graph as a list of job ids, or None. Iterative, so deep DAGs are fine."""
    white, grey, black = 0, 1, 2
    color: dict[int, int] = {}
    for start in parents:
        if color.get(start, white) != white:
            continue
        stack: list[tuple[int, Iterable[int]]] = [(start, iter(parents.get(start, ())))]
        color[start] = grey
        path = [start]
        while stack:
            node, it = stack[-1]
            advanced = False
            for parent in it:  # type: ignore[attr-defined]
                state = color.get(parent, white)
                if state == grey:
                    return [*path[path.index(parent):], parent]
                if state == white:
                    color[parent] = grey
                    path.append(parent)
                    stack.append((parent, iter(parents.get(parent, ()))))
                    advanced = True
                    break
            if not advanced:
                color[node] = black
                path.pop()
                stack.pop()
    return None
