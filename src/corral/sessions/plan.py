"""A recipe -> one batch: per repetition and service cell, a service job; per client cell, the clients'
jobs (replicas in parallel), which wait for the service to be ready and run one client cell after the
other (client dimensions do not restart the service)."""

from __future__ import annotations

import hashlib
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from corral.client.dsl import Batch
from corral.client.job import Job
from corral.domain.services import env_name
from corral.errors import InvalidInput
from corral.sessions.harness import encode_task
from corral.sessions.recipe import Cell, Recipe, Resources, client_for_cell, expand_matrix, service_for_cell
from corral.sessions.registry import REGISTRY


@dataclass
class Plan:
    cells: list[Cell]
    n_services: int
    n_clients: int


def check_types(recipe: Recipe) -> None:
    """Types exist and accept their params (errors name the field)."""
    service_type = REGISTRY.service_type(recipe.service.type)
    cells = expand_matrix(recipe)
    for cell in cells:
        service_type.check(service_for_cell(recipe.service, cell))
        for i, client in enumerate(recipe.clients):
            REGISTRY.client_type(client.type, f"clients[{i}].type").check(
                client_for_cell(client, cell), f"clients[{i}]"
            )


def seed_for(recipe: Recipe, *parts: Any) -> int:
    text = ":".join(str(p) for p in (recipe.seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _resources(job: Job, res: Resources) -> None:
    if res.cpu is not None:
        job.cpu(res.cpu)
    if res.memory is not None:
        job.memory(res.memory)
    if res.storage is not None:
        job.storage(res.storage)


def build(recipe: Recipe, batch: Batch, *, session: str, pool: str | None = None) -> Plan:
    check_types(recipe)
    cells = expand_matrix(recipe)
    python = recipe.python or sys.executable
    service_type = REGISTRY.service_type(recipe.service.type)
    by_service: dict[str, list[Cell]] = {}
    for cell in cells:
        by_service.setdefault(cell.service_key, []).append(cell)
    n_services = n_clients = 0
    for rep in range(1, recipe.repetitions + 1):
        for group in by_service.values():
            config = service_for_cell(recipe.service, group[0])
            n_services += 1
            name = f"svc-{group[0].id}-r{rep}"
            ports = list(config.ports or service_type.ports)
            svc = batch.new_service(
                name,
                ports=ports,
                scheme=service_type.scheme,
                attributes={
                    "bench_session": session,
                    "bench_role": "service",
                    "bench_cells": ",".join(c.id for c in group),
                    "bench_repetition": rep,
                },
            )
            svc.command(service_type.command(config))
            _resources(svc, config.resources)
            if config.image:
                svc.image(config.image)
            assert svc._service is not None
            svc._service["probes"] = [*service_type.probes(config), *config.ready.probes]
            svc.ready(
                deadline=config.ready.deadline, interval=config.ready.interval, grace=config.grace_period
            )
            if config.pool or pool or recipe.pool:
                svc.pool(str(config.pool or pool or recipe.pool))
            previous: list[Job] = []
            for cell in group:
                current: list[Job] = []
                for index, client_config in enumerate(recipe.clients):
                    client = client_for_cell(client_config, cell)
                    for replica in range(1, client.replicas + 1):
                        n_clients += 1
                        task = {
                            "client": client.model_dump(mode="json"),
                            "service_env": env_name(name),
                            "seed": seed_for(recipe, cell.id, rep, index, replica),
                            "cell": cell.id,
                            "repetition": rep,
                            "label": client.label,
                            "replica": replica,
                        }
                        job = batch.new_job(
                            f"{client.label}-{cell.id}-r{rep}-{replica}",
                            attributes={
                                "bench_session": session,
                                "bench_role": "client",
                                "bench_cell": cell.id,
                                "bench_repetition": rep,
                                "bench_client": client.label,
                                "bench_replica": replica,
                            },
                        )
                        job.command(
                            f"exec {shlex.quote(python)} -m corral.sessions.harness {encode_task(task)}"
                        )
                        job.depends_on(svc, when="ready", placement=client.placement)
                        if previous:
                            job.depends_on(*previous)
                        _resources(job, client.resources)
                        if client.pool or pool or recipe.pool:
                            job.pool(str(client.pool or pool or recipe.pool))
                        if client.image:
                            job.image(client.image)
                        current.append(job)
                previous = current
    if n_clients == 0:
        raise InvalidInput("clients: no client job to run", field="clients")
    return Plan(cells, n_services, n_clients)
