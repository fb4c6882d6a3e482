"""W9's cluster and pools: the 4-node SLURM of scripts/slurm-cluster.sh (its own directory and ports, apart
from the tests' one), and Corral pools of pilot workers submitted with the SLURM provider.

With the autoscaler (corral.driver.autoscaler) the server gets a TOML with a SLURM pool of `min_instances`
standing pilots and brings them up itself. Without it, the bench does the autoscaler's part: it records the
pilot instances in the server's store before the server starts, then asks the provider for them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.context import Context
from bench.corral_server import CorralServer
from bench.model import BenchError
from bench.paths import ROOT, WORK
from bench.peers.slurm import Slurm

CLUSTER_DIR = WORK / "slurm-cluster"
# Per node. Two pools of 4 pilots x 8 cores hold 64 of the 128 advertised CPUs; plain sbatch jobs get the
# other 64, as many as the single-node bench SLURM advertises.
CLUSTER_CPUS = 32


def cluster(ctx: Context) -> Slurm:
    """Start (once per run) the 4-node cluster; stopped when the run ends."""

    def start() -> Slurm:
        env = {**os.environ, "CORRAL_SLURM_CLUSTER_DIR": str(CLUSTER_DIR),
               "CORRAL_SLURM_CLUSTER_CPUS": str(CLUSTER_CPUS)}
        script = str(ROOT / "scripts" / "slurm-cluster.sh")
        ctx.log(f"W9: {script} start ({CLUSTER_DIR})")
        done = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise BenchError(f"scripts/slurm-cluster.sh start failed: {done.stderr.strip()[-300:]}")
        ctx.cleanup.callback(lambda: subprocess.run([script, "stop"], env=env, check=False,
                                                    capture_output=True))
        conf = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
        workdir = WORK / "slurm-cluster-jobs"
        workdir.mkdir(parents=True, exist_ok=True)
        slurm = Slurm({**os.environ, "SLURM_CONF": conf}, workdir, CLUSTER_DIR / "log" / "jobcomp.txt")
        slurm.mark()
        return slurm

    return ctx.shared("slurm-cluster", start)


@dataclass
class PilotPool:
    server: CorralServer
    pilots: int
    cores: float
    runtime: str
    job_ids: list[str] = field(default_factory=list)


async def _register(db_url: str, collection: str, slots: list[tuple[str, str]], cores: float,
                    memory: int) -> None:
    from corral.domain.tokens import hash_token
    from corral.store import instances as instance_store
    from corral.store.db import make_engine, migrate

    engine = make_engine(db_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await instance_store.ensure_collection(conn, collection, kind="pool", provider="slurm", config={})
            for name, token in slots:
                await instance_store.create_instance(
                    conn, name=name, collection=collection, cores_mcpu=int(cores * 1000), memory_bytes=memory,
                    token_hash=hash_token(token), metadata={"provider": "slurm"}, now=time.time())
    finally:
        await engine.dispose()


async def _submit_pilots(conf: str, collection: str, url: str, slots: list[tuple[str, str]], cores: float,
                         memory: int, runtime: str, log_dir: Path) -> list[str]:
    from corral.config import Settings
    from corral.providers.base import InstanceRequest
    from corral.providers.config import InstanceCollectionConfig
    from corral.providers.slurm import SlurmProvider

    config = InstanceCollectionConfig(
        name=collection, provider="slurm", shape={"cores": cores, "memory": str(memory)},
        provider_options={"env": {"SLURM_CONF": conf}, "log_dir": str(log_dir), "worker_runtime": runtime},
    )
    provider = SlurmProvider(config, Settings(home=log_dir))
    await provider.start(url)
    try:
        shape = provider.shapes()[0]
        ids = []
        for name, token in slots:
            meta = await provider.create_instance(InstanceRequest(name, collection, shape, token, url))
            ids.append(str(meta["job_id"]))
        deadline = time.monotonic() + 120
        while True:  # every pilot running (the worker then activates within a second)
            states = {i.name: i.status for i in await provider.list_instances()}
            if all(states.get(name) == "running" for name, _ in slots):
                return ids
            if any(states.get(name) == "gone" for name, _ in slots) or time.monotonic() > deadline:
                raise BenchError(f"W9 pilots did not all start: {states}")
            await asyncio.sleep(0.2)
    finally:
        await provider.stop()


def start_pool(ctx: Context, slurm: Slurm, *, pilots: int, cores: float, runtime: str) -> PilotPool:
    """A corral server whose default pool is `pilots` SLURM pilots of `cores` cores each."""
    collection = f"w9{runtime}"
    home = WORK / f"w9-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    memory = 2 * 1024**3
    if importlib.util.find_spec("corral.driver.autoscaler") is not None:
        return _autoscaled_pool(ctx, slurm, home, collection, pilots, cores, memory, runtime)
    db_url = f"sqlite+aiosqlite:///{home / 'corral.db'}"
    slots = [(f"pilot-{runtime}-{k}", uuid.uuid4().hex + uuid.uuid4().hex) for k in range(pilots)]
    asyncio.run(_register(db_url, collection, slots, cores, memory))
    server = CorralServer(f"w9{runtime}", {"local_workers": "0", "pool": collection}, database_url=db_url)
    ctx.cleanup.callback(server.stop)
    server.start()
    conf = slurm.env["SLURM_CONF"]
    job_ids = asyncio.run(_submit_pilots(conf, collection, server.url, slots, cores, memory, runtime, home))
    ctx.cleanup.callback(lambda: subprocess.run(["scancel", *job_ids], env=slurm.env, check=False,
                                                capture_output=True))
    ctx.log(f"W9: {pilots} {runtime} pilots of {cores:g} cores running as SLURM jobs {','.join(job_ids)}")
    return PilotPool(server, pilots, cores, runtime, job_ids)


def _autoscaled_pool(ctx: Context, slurm: Slurm, home: Path, collection: str, pilots: int, cores: float,
                     memory: int, runtime: str) -> PilotPool:
    import sys

    config = home / "corral.toml"
    config.write_text(
        f'[[instance_collections]]\nname = "{collection}"\nkind = "pool"\nprovider = "slurm"\n'
        f'shape = {{ cores = {cores:g}, memory = "{memory}" }}\n'
        f"min_instances = {pilots}\nmax_instances = {pilots}\nmax_new_instances_per_loop = {pilots}\n"
        "idle_seconds = 3600\n[instance_collections.provider_options]\n"
        f'worker_runtime = "{runtime}"\nworker_python = "{sys.executable}"\nlog_dir = "{home}"\n'
        f'[instance_collections.provider_options.env]\nSLURM_CONF = "{slurm.env["SLURM_CONF"]}"\n'
    )
    settings = {"local_workers": "0", "pool": collection, "config": str(config)}
    if runtime == "host":  # the site's opt-in, which the pilots get with the server's [jobs] policy
        settings["jobs"] = '{"allow_host_runtime": true}'
    server = CorralServer(collection, settings, database_url=f"sqlite+aiosqlite:///{home / 'corral.db'}")
    ctx.cleanup.callback(server.stop)
    server.start()
    prefix = f"corral.{collection}."
    deadline = time.monotonic() + 120
    while True:  # the autoscaler keeps min_instances standing pilots
        out = subprocess.run(["squeue", "-h", "-t", "running", "-o", "%i|%j"], env=slurm.env,
                             capture_output=True, text=True).stdout
        job_ids = [i for i, n in (ln.split("|", 1) for ln in out.splitlines()) if n.startswith(prefix)]
        if len(job_ids) >= pilots:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"W9: the autoscaler started {len(job_ids)}/{pilots} pilots in 120 s")
        time.sleep(0.2)
    ctx.cleanup.callback(lambda: subprocess.run(["scancel", *job_ids], env=slurm.env, check=False,
                                                capture_output=True))
    ctx.log(f"W9: {pilots} {runtime} pilots of {cores:g} cores (autoscaler), jobs {','.join(job_ids)}")
    return PilotPool(server, pilots, cores, runtime, job_ids)
