"""Job groups form a tree under the root group 0 (the batch itself); pure helpers."""

from __future__ import annotations

from collections.abc import Iterable


def descendants(parent_of: Iterable[tuple[int, int]], root: int) -> set[int]:
    """root and every group below it, from (group id, parent id) pairs."""
    children: dict[int, list[int]] = {}
    for group, parent in parent_of:
        children.setdefault(parent, []).append(group)
    out, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out
