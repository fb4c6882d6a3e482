"""When a driver tick fails: rebuild from the store, then retry the same inbox (a passing failure of the
database) or apply its items one by one, isolating the one that fails alone (its attempt ends in Error with
the reason) so the rest of the system carries on."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from corral.driver.inbox import ErroredAttempt, Inbox, Report, is_passing
from corral.worker.protocol import UsageEvent

if TYPE_CHECKING:
    from corral.driver.driver import Driver

log = logging.getLogger("corral.driver")


async def recover(driver: Driver, inbox: Inbox, exc: Exception) -> None:
    """A failed tick changed nothing in the store: rebuild memory from it. A passing failure (the
    database) retries the same inbox; otherwise its items are applied one by one, and one that fails
    alone is isolated (its attempt ends in Error with the reason), so the rest carry on."""
    log.error("driver tick failed; rebuilding from the store: %r", exc, exc_info=exc)
    try:
        await driver._rebuild()
    except Exception:
        log.exception("rebuild failed; retrying")
        driver._inbox.put_back(inbox)
        await asyncio.sleep(0.5)
        return
    if is_passing(exc):
        driver._inbox.put_back(inbox)
        await asyncio.sleep(0.5)
        return
    for report in inbox.reports:
        acked: list[str] = []
        for event in report.events:
            single = Report(report.instance, [event], asyncio.get_running_loop().create_future())
            failure = await tick_alone(driver, Inbox(reports=[single]))
            if failure is not None and isinstance(event, UsageEvent):
                log.warning("usage samples of %s dropped: %r", event.key, failure)  # the job goes on
            elif failure is not None:
                reason = f"the driver could not apply the worker's '{event.type}' event: {failure!r}"
                log.error("attempt %s on %s isolated: %s", event.key, report.instance.name, reason)
                await tick_alone(driver, Inbox(errored=[ErroredAttempt(report.instance.name, event.key,
                                                                     reason)]))
            acked.append(event.key)
        if not report.done.done():
            report.done.set_result(acked)
    for item in inbox.items():
        failure = await tick_alone(driver, item)
        if failure is not None:
            log.error("driver dropped an item it cannot apply (the store keeps it): %s: %r",
                      item, failure)

async def tick_alone(driver: Driver, inbox: Inbox) -> Exception | None:
    """One item alone in a tick; on failure the memory is rebuilt and the failure returned."""
    try:
        await driver._tick(inbox)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await driver._rebuild()
        return exc
    return None
