"""Billing project operations shared by Corral's routes and the Hail-compatible ones: who may see a
project, its lifecycle (open -> closed -> open | deleted), its spend limit, and whether it accepts work."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from corral.api.context import ApiContext
from corral.domain.billing.limits import is_over_limit, limit_message
from corral.errors import Conflict, Forbidden, InvalidInput, NotFound
from corral.store import billing as billing_store
from corral.store import ledger
from corral.store import users as user_store
from corral.store.users import BillingProjectSummary, User


async def visible_project(conn: AsyncConnection, name: str, user: User) -> BillingProjectSummary:
    """The project if the user is an admin or a member; 404 otherwise (others' projects are not revealed)."""
    member = None if user.is_admin else user.name
    found = await user_store.list_billing_projects(conn, member=member, name=name)
    if not found:
        raise NotFound(f"billing_project: no billing project {name!r} you can see", field="billing_project")
    return found[0]


async def _existing(conn: AsyncConnection, name: str) -> BillingProjectSummary:
    found = await user_store.list_billing_projects(conn, name=name, include_deleted=True)
    if not found:
        raise NotFound(f"billing_project: no billing project {name!r}", field="billing_project")
    return found[0]


async def close(ctx: ApiContext, name: str) -> BillingProjectSummary:
    """No new batches or updates; running batches finish. Idempotent."""
    async with ctx.writing() as conn:
        project = await _existing(conn, name)
        if project.status == billing_store.DELETED:
            raise Conflict(f"billing_project: {name!r} is deleted", field="billing_project")
        await billing_store.set_status(conn, name, billing_store.CLOSED)
        return await _existing(conn, name)


async def reopen(ctx: ApiContext, name: str) -> BillingProjectSummary:
    async with ctx.writing() as conn:
        project = await _existing(conn, name)
        if project.status == billing_store.DELETED:
            raise Conflict(
                f"billing_project: {name!r} is deleted and cannot be reopened; create a new project",
                field="billing_project",
            )
        await billing_store.set_status(conn, name, billing_store.OPEN)
        return await _existing(conn, name)


async def delete(ctx: ApiContext, name: str) -> BillingProjectSummary:
    """Only a closed project without running batches; its spend stays in reports. Idempotent."""
    async with ctx.writing() as conn:
        project = await _existing(conn, name)
        if project.status == billing_store.DELETED:
            return project
        if project.status != billing_store.CLOSED:
            raise Conflict(
                f"billing_project: {name!r} is {project.status}; close it before deleting it",
                field="billing_project",
            )
        running = await billing_store.running_batches(conn, name)
        if running:
            shown = ", ".join(str(b) for b in running[:10])
            raise Conflict(
                f"billing_project: {name!r} still has {len(running)} running batch(es) ({shown}); wait for "
                "them to finish or cancel them, then delete",
                field="billing_project",
            )
        await billing_store.set_status(conn, name, billing_store.DELETED)
        return await _existing(conn, name)


def parse_limit(value: object, *, field: str = "limit") -> float | None:
    """A non-negative number, or None (no limit). Hail's client sends numbers or numeric strings."""
    if value is None or value == "":
        return None
    try:
        limit = float(str(value))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a number; send an amount or null for no limit",
                           field=field) from None
    if not limit >= 0 or limit == float("inf"):
        raise InvalidInput(f"{field}: {value!r} must be a finite amount >= 0 (or null for no limit)",
                           field=field)
    return limit


async def set_limit(ctx: ApiContext, name: str, limit: float | None) -> BillingProjectSummary:
    """Edit (a number) or remove (None) the spend limit; the driver picks it up at its next accrual."""
    async with ctx.writing() as conn:
        project = await _existing(conn, name)
        if project.status == billing_store.DELETED:
            raise Conflict(f"billing_project: {name!r} is deleted", field="billing_project")
        await billing_store.set_limit(conn, name, limit)
        return await _existing(conn, name)


async def check_accepts_work(
    conn: AsyncConnection, name: str, currency: str, *, field: str = "batch.billing_project"
) -> None:
    """403 naming the project if it is closed/deleted or its spend has reached its limit."""
    project = await user_store.billing_project(conn, name)
    if project is None:
        return  # unknown projects are the caller's 400
    if project.status != billing_store.OPEN:
        raise Forbidden(
            f"{field}: billing project {name!r} is {project.status}; it accepts no new batches or updates",
            field=field,
        )
    if project.spend_limit is None:
        return
    spend = (await ledger.project_spend(conn, [name])).get(name, Decimal(0))
    if is_over_limit(spend, project.spend_limit):
        raise Forbidden(limit_message(name, project.spend_limit, spend, currency), field=field)
