"""Path and query parameters with the bounds of the columns behind them: an id no row can have is a 400
naming the parameter, never an overflow in the database (BIGINT batch ids, INTEGER job/update/group ids)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_BATCH_ID = 2**62
MAX_INT32 = 2**31 - 1

BatchId = Annotated[int, Path(ge=0, le=MAX_BATCH_ID, description="a batch id")]
JobId = Annotated[int, Path(ge=0, le=MAX_INT32, description="a job id within its batch")]
UpdateId = Annotated[int, Path(ge=0, le=MAX_INT32, description="an update id within its batch")]
JobGroupId = Annotated[int, Path(ge=0, le=MAX_INT32, description="a job group id within its batch")]
AttemptId = Annotated[int, Path(ge=0, le=MAX_INT32, description="an attempt id within its job")]
BatchCursor = Annotated[
    int | None, Query(ge=0, le=MAX_BATCH_ID, description="the last id of the previous page")
]
IdCursor = Annotated[int | None, Query(ge=0, le=MAX_INT32, description="the last id of the previous page")]
