"""Keyset paging with a filter applied in Python: read pages until `limit` records pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection

R = TypeVar("R")


async def filtered_page(
    conn: AsyncConnection,
    query: Select[Any],
    key: Any,
    *,
    descending: bool,
    cursor: int | None,
    limit: int,
    convert: Callable[[Any], R],
    predicate: Callable[[R], bool] | None,
    min_page: int,
) -> list[R]:
    """Up to `limit` records after `cursor` in key order; unfiltered queries read one page only."""
    found: list[R] = []
    page = limit if predicate is None else max(4 * limit, min_page)
    order = key.desc() if descending else key
    while len(found) < limit:
        paged = query if cursor is None else query.where(key < cursor if descending else key > cursor)
        rows = list(await conn.execute(paged.order_by(order).limit(page)))
        for row in rows:
            record = convert(row)
            if predicate is None or predicate(record):
                found.append(record)
                if len(found) == limit:
                    break
        if len(rows) < page:
            break
        cursor = getattr(rows[-1], key.name)
    return found
