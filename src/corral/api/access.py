"""Who may do what to a batch (the README's access section states these rules).

* The owner and admins: everything.
* Members of the batch's billing project: see the batch, its jobs and logs, and cancel it; env values
  marked secret are "[redacted]" for them (in the job spec and wherever the value shows in a log).
* Only the owner or an admin may append jobs (updates, bunches, commits, job groups) or delete it:
  appended jobs run as the owner's, so a member must not be able to add them.
* Anyone else: 404, as if the batch did not exist.
"""

from __future__ import annotations

from typing import Any

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


REDACTED = "[redacted]"


def owns(batch: BatchRecord, user: User) -> bool:
    return user.is_admin or batch.user == user.name


async def owned_batch(
    conn: AsyncConnection, batch_id: int, user: User, action: str, *, for_update: bool = False
) -> BatchRecord:
    """The batch if the user owns it (or is an admin); 403 for other members, 404 for everyone else."""
    batch = await visible_batch(conn, batch_id, user, for_update=for_update)
    if not owns(batch, user):
        raise Forbidden(
            f"batch_id: only the owner of batch {batch_id} ({batch.user}) or an admin may {action}; members "
            f"of billing project {batch.billing_project!r} may see and cancel it",
            field="batch_id",
        )
    return batch


def redact_spec(spec: dict[str, Any], batch: BatchRecord, user: User) -> dict[str, Any]:
    """The job spec as `user` may see it: secret env values hidden from everyone but the owner."""
    secret = spec.get("secret_env") or []
    if not secret or batch.user == user.name:
        return spec
    env = {k: (REDACTED if k in secret else v) for k, v in (spec.get("env") or {}).items()}
    return {**spec, "env": env}


def redact_text(text: str, spec: dict[str, Any], batch: BatchRecord, user: User) -> str:
    """A log as `user` may read it: where a secret env value appears, "[redacted]"."""
    secret = spec.get("secret_env") or []
    if not secret or batch.user == user.name:
        return text
    env = spec.get("env") or {}
    for value in sorted((str(env[k]) for k in secret if env.get(k)), key=len, reverse=True):
        if len(value) >= 4:  # shorter values would redact ordinary words
            text = text.replace(value, REDACTED)
    return text


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
