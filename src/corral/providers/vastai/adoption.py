"""After a restart and on every listing: the instances labelled as ours that the provider must adopt,
destroy, or report (one labelled for a collection that is not configured)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from corral.providers.vastai import host as remote
from corral.providers.vastai.rented import Rented

if TYPE_CHECKING:
    from corral.providers.vastai.provider import VastProvider

log = logging.getLogger("corral.providers.vastai")


async def adopt(p: VastProvider, known: dict[str, dict[str, Any]]) -> None:
    """After a restart: reconnect to every instance of ours the store knows, destroy the others."""
    listing = await p._list(max_age=0)
    tasks = []
    for info in listing:
        parsed = p._parse_label(info.get("label"))
        if parsed is None or parsed[0] != p.collection:
            continue
        name = parsed[1]
        p.billed[int(info["id"])] = (name, float(info.get("dph_total") or 0.0))
        meta = known.get(name)
        if meta is None or meta.get("vast_id") != int(info["id"]) or not meta.get("tunnel_port"):
            why = "not in the store" if meta is None else "its bring-up did not finish before the restart"
            log.warning(
                "vastai %s: instance %s (%s) %s: destroying it",
                p.collection,
                info["id"],
                info.get("label"),
                why,
            )
            await p._destroy_id(int(info["id"]))
            continue
        offer = dict(meta.get("offer") or {"machine_id": info.get("machine_id"), "num_gpus": 0})
        r = Rented(
            name,
            int(info["id"]),
            int(info.get("machine_id") or 0),
            offer,
            float(meta.get("price_per_hour") or info.get("dph_total") or 0.0),
            bool(info.get("is_bid")),
            str(info.get("label")),
            metadata=dict(meta),
        )
        p.rented[name] = r
        tasks.append(reconnect(p, r, info, int(str(meta["tunnel_port"]))))
    await asyncio.gather(*tasks)
    sweep(p, listing)


async def reconnect(p: VastProvider, r: Rented, info: dict[str, Any], tunnel_port: int) -> None:
    try:
        address = remote.ssh_address(info, p.options.ssh_via)
        if address is None or info.get("actual_status") != "running":
            raise remote.BringUpError(f"status {info.get('actual_status')}: {info.get('status_msg')}")
        session = await remote.connect(
            p._ssh_host(r.name, address),
            p.ssh_options,
            p.driver_url,
            deadline=time.monotonic() + p.options.connect_timeout,
            tunnel_port=tunnel_port,
        )
        r.session = session
        pid, restarted = await remote.ensure_worker(session, r.name)
        r.status = "running"
        log.info(
            "vastai %s: adopted instance %s (%s), worker pid %d%s",
            p.collection,
            r.name,
            r.vast_id,
            pid,
            " (restarted)" if restarted else "",
        )
        p._start_sampler(r)
    except Exception as exc:
        r.status, r.reason = "gone", f"could not be adopted after a restart: {exc}"
        log.warning("vastai %s: %s: %s", p.collection, r.name, r.reason)


def sweep(p: VastProvider, listing: list[dict[str, Any]]) -> None:
    """Labelled instances of ours nobody accounts for: destroyed (this collection) or reported."""
    ours = {r.vast_id for r in p.rented.values()}
    listed = {int(info["id"]) for info in listing}
    for vast_id in set(p.billed) - listed - ours - p._destroying:
        del p.billed[vast_id]  # vast.ai no longer lists it: it no longer bills
    for info in listing:
        vast_id = int(info["id"])
        if vast_id in p._destroying:
            continue
        if vast_id in p.to_destroy:
            p._spawn(p._destroy_id(vast_id))
            continue
        parsed = p._parse_label(info.get("label"))
        if parsed is None:
            continue
        collection, name = parsed
        if collection != p.collection:
            if collection not in p.other_collections and vast_id not in p.unaccounted:
                p.unaccounted[vast_id] = str(info.get("label"))
                log.error(
                    "vastai: instance %s labelled %r belongs to no configured collection; it is "
                    "left alone and keeps billing: destroy it or configure its collection",
                    vast_id,
                    info.get("label"),
                )
            continue
        if vast_id in ours or name in p.creating:
            continue
        p.billed.setdefault(vast_id, (name, float(info.get("dph_total") or 0.0)))
        log.warning(
            "vastai %s: instance %s (label %s) is one corral does not account for: destroying it",
            p.collection,
            vast_id,
            info.get("label"),
        )
        p._spawn(p._destroy_id(vast_id))
