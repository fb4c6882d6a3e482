"""The SLURM provider: instances are pilot jobs (`sbatch`) running the Corral worker.

Pools get long-lived pilots of the collection's shape; a job-private collection gets one allocation sized
for one job (the shape in the request). Status comes from ONE `squeue` per listing for all our jobs; jobs
that left the queue are looked up in ONE `sacct -c` (completion log) or `sacct` call, to tell why they ended.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from corral.config import Settings
from corral.providers.base import InstanceRequest, ProviderInstance, worker_environment
from corral.providers.config import InstanceCollectionConfig
from corral.providers.slurm import cluster, pilot
from corral.providers.slurm.commands import FinishedJob, QueuedJob, SlurmCommandFailed
from corral.providers.slurm.options import parse_options
from corral.providers.slurm.runners import CommandRunner, LocalRunner, SlurmUnavailable
from corral.providers.slurm.states import UNKNOWN_GONE, classify

log = logging.getLogger("corral.providers.slurm")
FORGET_GONE_AFTER = 3600.0  # seconds a gone pilot keeps being reported if nobody deletes it


@dataclass
class _Pilot:
    job_id: str
    submitted: float  # time.monotonic()


class SlurmProvider:
    name = "slurm"

    def __init__(
        self, collection: InstanceCollectionConfig, settings: Settings, *, runner: CommandRunner | None = None
    ) -> None:
        self.collection = collection
        self.options = parse_options(collection.name, collection.provider_options)
        self.settings = settings
        self._runner = runner
        self._link: cluster.ClusterLink | None = None
        self._driver_url = ""
        self._pilots: dict[str, _Pilot] = {}  # instance name -> its job, until reported gone and deleted
        self._finished: dict[str, FinishedJob] = {}  # job id -> final record (looked up once)
        self._gone_since: dict[str, float] = {}  # instance name -> first reported gone (monotonic)

    # ------------------------------------------------------------ contract

    @property
    def link(self) -> cluster.ClusterLink:
        if self._link is None:
            self._link = cluster.acquire(self.options, self._runner)
        return self._link

    async def start(self, driver_url: str) -> None:
        self._driver_url = driver_url
        runner = self.link.runner
        await self._worker_url(driver_url)  # connects, and opens the tunnel when remote
        log_dir = self._log_dir()
        done = await runner.run(["mkdir", "-p", log_dir], timeout=self.options.command_timeout)
        if not done.ok:
            log.warning("slurm collection %s: cannot create the pilots' log dir: %s", self.collection.name,
                        done.describe())

    async def stop(self) -> None:
        # Pilots keep running: after a restart they are found again by their job names.
        if self._link is not None:
            await cluster.release(self._link)
            self._link = None

    async def create_instance(self, request: InstanceRequest) -> dict[str, object]:
        runner = self.link.runner
        url = await self._worker_url(request.driver_url or self._driver_url)
        script = pilot.pilot_script(self.options, request, url, worker_environment(self.settings))
        args = pilot.sbatch_args(self.options, request, self._log_dir())
        job_id = await self.link.commands.submit(script, args)
        self._pilots[request.name] = _Pilot(job_id, time.monotonic())
        log.info("slurm collection %s: instance %s is job %s (%s)", self.collection.name, request.name,
                 job_id, runner.where)
        return {
            "provider": self.name, "job_id": job_id, "where": runner.where, "worker_url": url,
            "job_name": pilot.job_name(self.options, request.collection, request.name),
        }

    async def delete_instance(self, name: str, metadata: dict[str, object]) -> None:
        """`scancel` the pilot; cancelling a job already over is not an error."""
        known = self._pilots.get(name)
        job_id = str(metadata.get("job_id") or "") or (known.job_id if known else "")
        if not job_id:
            snap = await self.link.snapshot(self.options.status_max_age)
            job_id = next((j.job_id for j in snap.jobs if self._instance(j) == name), "")
        if job_id:
            await self.link.commands.cancel([job_id])
        self._forget(name, job_id)

    async def list_instances(self) -> list[ProviderInstance]:
        snap = await self.link.snapshot(self.options.status_max_age)
        seen: dict[str, QueuedJob] = {}
        for job in snap.jobs:
            name = self._instance(job)
            if name is not None:
                seen[name] = job
                if name not in self._pilots:  # ours from before a restart: adopt it
                    self._pilots[name] = _Pilot(job.job_id, 0.0)
        out = [self._from_queue(name, job) for name, job in seen.items()]
        left = {n: p for n, p in self._pilots.items() if n not in seen}
        young = {n for n, p in left.items() if p.submitted > snap.taken}  # submitted after squeue ran
        lookup = [p.job_id for n, p in left.items() if n not in young and p.job_id not in self._finished]
        if lookup:
            try:
                self._finished.update(await self.link.commands.finished(lookup))
            except (SlurmCommandFailed, SlurmUnavailable) as exc:
                # They are gone either way (squeue no longer has them); only the reason stays unknown.
                log.warning("slurm collection %s: cannot tell why jobs %s ended: %s", self.collection.name,
                            ",".join(lookup), exc.message)
        now = time.monotonic()
        for name, p in left.items():
            if name in young:
                out.append(ProviderInstance(name, "pending", metadata={"job_id": p.job_id}))
            elif now - self._gone_since.setdefault(name, now) > FORGET_GONE_AFTER:
                self._forget(name, p.job_id)  # long reported gone and never deleted: stop carrying it
            else:
                out.append(self._from_record(name, p.job_id, self._finished.get(p.job_id)))
        return out

    def _forget(self, name: str, job_id: str) -> None:
        self._pilots.pop(name, None)
        self._gone_since.pop(name, None)
        self._finished.pop(job_id, None)

    # ------------------------------------------------------------ helpers

    def _instance(self, job: QueuedJob) -> str | None:
        return pilot.instance_of(self.options, self.collection.name, job.name)

    def _from_queue(self, name: str, job: QueuedJob) -> ProviderInstance:
        status, reason = classify(job.state)
        meta: dict[str, object] = {"job_id": job.job_id, "slurm_state": job.state, "nodes": job.nodes}
        if job.reason and job.reason != "None":
            meta["slurm_reason"] = job.reason  # e.g. why it is still pending: Resources, Priority, QOS…
        return ProviderInstance(name, status, reason, meta)

    def _from_record(self, name: str, job_id: str, record: FinishedJob | None) -> ProviderInstance:
        if record is None:
            return ProviderInstance(name, "gone", UNKNOWN_GONE, {"job_id": job_id})
        status, reason = classify(record.state)
        if status != "gone":  # the log says it is still alive, but squeue no longer lists it
            status, reason = "gone", UNKNOWN_GONE
        return ProviderInstance(name, status, reason, {
            "job_id": job_id, "slurm_state": record.state, "exit_code": record.exit_code,
            "nodes": record.nodes, "end": record.end, "output": f"{self._log_dir()}/{name}.{job_id}.log",
        })

    async def _worker_url(self, driver_url: str) -> str:
        if self.options.driver_url:
            return self.options.driver_url
        return await self.link.runner.worker_url(driver_url)

    def _log_dir(self) -> str:
        if self.options.log_dir:
            return self.options.log_dir
        if isinstance(self.link.runner, LocalRunner):
            return str(self.settings.home / "slurm" / self.collection.name)
        return f".corral/slurm/{self.collection.name}"  # relative to the login user's home


def make_provider(collection: InstanceCollectionConfig, settings: Settings) -> SlurmProvider:
    """Entry point for the provider registry (`provider = "slurm"` in [[instance_collections]])."""
    return SlurmProvider(collection, settings)
