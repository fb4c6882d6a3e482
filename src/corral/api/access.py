"""Who may see a batch and submit to a billing project."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import Forbidden, InvalidInput, NotFound
from corral.store import users as user_store
from corral.store.batches import BatchRecord, get_batch
from corral.store.users import User


async def can_see(conn: AsyncConnection, batch: BatchRecord, user: User) -> bool:
    if user.is_admin or batch.user == user.name:
        return True
    return await user_store.is_billing_project_member(conn, batch.billing_project, user.name)


async def visible_batch(
    conn: AsyncConnection, batch_id: int, user: User, *, for_update: bool = False
) -> BatchRecord:
    """The batch if the user owns it or belongs to its billing project; otherwise 404 (not 403: others'
    batch ids are not revealed)."""
    batch = await get_batch(conn, batch_id, for_update=for_update)
    if batch is None or not await can_see(conn, batch, user):
        raise NotFound(f"batch_id: batch {batch_id} not found", field="batch_id")
    return batch


async def check_can_submit(
    conn: AsyncConnection, billing_project: str, user: User, *, field: str = "batch.billing_project"
) -> None:
    """400 if the billing project does not exist, 403 if it is closed or the user is not a member."""
    project = await user_store.billing_project(conn, billing_project)
    if project is None:
        raise InvalidInput(
            f"{field}: unknown billing project {billing_project!r}; use one you are a member of "
            "(GET /api/v1/billing-projects lists them)",
            field=field,
        )
    if project.status != "open":
        raise Forbidden(
            f"{field}: billing project {billing_project!r} is {project.status}; it accepts no new batches",
            field=field,
        )
    if not user.is_admin and not await user_store.is_billing_project_member(conn, billing_project, user.name):
        raise Forbidden(
            f"{field}: user {user.name!r} is not a member of billing project {billing_project!r}; ask an "
            "admin to add you or choose another billing project",
            field=field,
        )
