"""Insert many rows at once, below SQLAlchemy's per-row work: PostgreSQL COPY, SQLite executemany.

A 10,000-job bunch through `conn.execute(table.insert(), dicts)` spends most of its time compiling
parameters row by row and JSON-encoding with the standard library; the database itself needs a small
part of that. Here the caller gives plain tuples in a fixed column order (JSON columns already encoded
with `store.db.json_column_text`, as the engines' JSON type binds them), and they go to the driver as
they are, in the caller's transaction:

* PostgreSQL (asyncpg): `copy_records_to_table` (binary COPY). Errors are raised as the SQLAlchemy
  exceptions a `conn.execute` would raise (IntegrityError for a duplicate key, OperationalError when the
  connection is lost), so callers and the API's error mapping need not know which path ran.
* SQLite: one prepared INSERT, `executemany` in the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection


def _insert_sql(conn: AsyncConnection, table: Table, columns: Sequence[str]) -> str:
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"


async def insert_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `records` (tuples in `columns` order) into `table` in the connection's transaction."""
    if not records:
        return
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
    if conn.dialect.name == "postgresql":
        await _copy_postgres(conn, table, columns, records)
        return
    await conn.exec_driver_sql(_insert_sql(conn, table, columns), list(records))


async def _copy_postgres(
    conn: AsyncConnection, table: Table, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    import asyncpg

    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens its transaction with the first statement: open it now, so
        # the copy is part of the caller's transaction (and rolled back with it).
        await conn.exec_driver_sql("SELECT 1")
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
    try:
        await driver.copy_records_to_table(
            table.name, records=records, columns=list(columns), schema_name=table.schema
        )
    except asyncpg.IntegrityConstraintViolationError as error:
        raise sa_exc.IntegrityError(statement, None, error) from error
    except asyncpg.DataError as error:
        raise sa_exc.DataError(statement, None, error) from error
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as error:
        raise sa_exc.OperationalError(statement, None, error) from error
    except asyncpg.PostgresError as error:
        raise sa_exc.DBAPIError(statement, None, error) from error
