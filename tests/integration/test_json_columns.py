"""JSON columns (store/db.py `json_column_text`): written with orjson's text, with the standard library's
for what orjson refuses, so every value that was storable still is and reads back the same, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

_META = sa.MetaData()
_PROBE = sa.Table("json_probe", _META, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("v", sa.JSON, nullable=True))


async def _stored(engine: AsyncEngine, values: list[Any]) -> tuple[list[Any], list[str]]:
    async with engine.begin() as conn:
        await conn.run_sync(_META.create_all)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(_PROBE), [{"id": i, "v": v} for i, v in enumerate(values)])
        async with engine.connect() as conn:
            read = [r.v for r in await conn.execute(sa.select(_PROBE.c.v).order_by(_PROBE.c.id))]
            texts = [r[0] for r in await conn.execute(
                sa.select(sa.cast(_PROBE.c.v, sa.Text)).order_by(_PROBE.c.id))]
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_META.drop_all)
    return read, texts


async def test_json_values_read_back_as_written(engine: AsyncEngine) -> None:
    values: list[Any] = [
        {"image": "ubuntu:24.04", "command": ["bash", "-c", "echo 'hé' > $OUT"], "cpu": 0.25,
         "env": {"A": "1"}, "nested": [{"x": None, "y": True}]},
        {"big": 2**70, "small": -(2**63)},  # beyond 64 bits: the standard library writes it, exactly
        {"1": "string key", "n": 1.5e300},
        ["a", 1, None, False],
        "text",
        7,
    ]
    read, texts = await _stored(engine, values)
    assert read == values
    assert isinstance(read[1]["big"], int) and read[1]["big"] == 2**70  # not a float
    assert texts[0].startswith('{"image":"ubuntu:24.04","command":["bash"')  # orjson's compact text
    assert "hé" in texts[0]  # UTF-8, not \u escapes


async def test_nan_and_infinity_are_stored_as_null_on_both_stores(engine: AsyncEngine) -> None:
    read, texts = await _stored(engine, [{"usage": float("nan"), "peak": float("inf"), "ok": 1.0}])
    assert read == [{"usage": None, "peak": None, "ok": 1.0}]
    assert texts == ['{"usage":null,"peak":null,"ok":1.0}']


async def test_a_value_neither_encoder_takes_is_refused_and_nothing_is_written(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_META.create_all)
    try:
        with pytest.raises(sa.exc.StatementError, match="not JSON serializable"):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(_PROBE), [{"id": 1, "v": {"ok": 1}}, {"id": 2, "v": {object()}}])
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(_PROBE))).scalar_one() == 0
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_META.drop_all)
