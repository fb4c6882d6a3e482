"""A starting root worker removes what ANY dead Corral worker left on the host, and nothing of a live one.

Three real servers with their own homes (so no worker ever starts next to another's work dir): C's
worker runs a job and stays alive; A's worker runs a job on a private network with default storage,
then A's server, worker and job are SIGKILLed; B starts elsewhere. On the host: A's volumes are
unmounted and its namespaces gone, C's volumes, namespaces, job and worker untouched.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from tests.acceptance.harness import RunningServer, job, worker_processes
from tests.containers.conftest import Registry, image_layout, registry, test_image  # noqa: F401
from tests.security.conftest import start_server

NETNS = Path("/run/netns")
NET_OWNERS = Path("/run/corral-net")
WORKERS = Path("/run/corral-workers")
STAGE = Path("/run/corral-oci")


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not met in {timeout}s: {what}")


def _mounts_under(home: Path) -> set[str]:
    """Mount points under a directory (a server's home, or a worker's oci stage)."""
    prefix = str(home.resolve()) + "/"
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)}


def _records_under(directory: Path, home: Path) -> set[str]:
    """Names of owner records in `directory` whose owner's work dir is in `home`."""
    found = set()
    for path in directory.glob("*") if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if str(record.get("lock", "")).startswith(str(home) + "/"):
            found.add(path.name)
    return found


def _namespaces_of(home: Path) -> set[str]:
    return {n for n in _records_under(NET_OWNERS, home) if (NETNS / n).exists()}


def _stage_of(server: RunningServer) -> Path:
    """The oci runtime's user-namespace stage of the server's one worker (named by its instance)."""
    names = set()
    for proc in worker_processes(server.home):  # (a worker's child between fork and exec looks alike)
        argv = proc.cmdline()
        if "--name" in argv:
            names.add(argv[argv.index("--name") + 1])
    [name] = names
    return STAGE / name


def _storage_lent(home: Path) -> bool:
    """A job's default storage: a pooled volume (mounted under the worker's volumes/) its scratch links to."""
    linked = any(p.is_symlink() for p in home.glob("worker/*/jobs/*/vol"))
    return linked and any("/volumes/" in m for m in _mounts_under(home))


def _run_until_killed(server: RunningServer, marker: str, image: str | None) -> int:
    spec = job(f"echo started; sleep {marker}", 1, network="private")
    if image is not None:
        spec["process"]["image"] = image
    batch_id = server.submit([spec])
    _wait_for(lambda: any(server.home.glob("worker/*/jobs/*/vol/io")), "the job is running")
    _wait_for(lambda: _storage_lent(server.home), "its storage is lent (a pooled volume)")
    _wait_for(lambda: _namespaces_of(server.home), "its private network exists, with an owner record")
    if image is not None:
        _wait_for(lambda: len(_mounts_under(_stage_of(server))) >= 3, "its container's stage is bound")
    return batch_id


@pytest.mark.parametrize("runtime", ["process", "oci"])
def test_a_worker_anywhere_reaps_a_dead_workers_volumes_and_namespaces(
    tmp_path: Path, runtime: str, registry: Registry, test_image: str  # noqa: F811
) -> None:
    settings = {"local_worker_runtime": runtime, "jobs": json.dumps({"default_storage": "64Mi"})}
    image = None
    if runtime == "oci":
        settings["images"] = registry.images_setting()
        image = test_image
    marker = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"  # unique on a shared host
    alive = start_server(tmp_path / "C" / "home", **settings)
    dead = start_server(tmp_path / "A" / "home", **settings)
    later: RunningServer | None = None
    try:
        alive_batch = _run_until_killed(alive, marker, image)
        _run_until_killed(dead, marker, image)
        alive_mounts, alive_nets = _mounts_under(alive.home), _namespaces_of(alive.home)
        alive_stage, dead_stage = (_stage_of(alive), _stage_of(dead)) if image else (STAGE / "-", STAGE / "-")
        alive_staged, dead_staged = _mounts_under(alive_stage), _mounts_under(dead_stage)
        assert dead_staged or image is None  # oci: root fs, /io and /tmp bound in A's stage
        [alive_worker] = worker_processes(alive.home)
        dead_mounts, dead_nets = _mounts_under(dead.home), _namespaces_of(dead.home)
        assert any("/volumes/" in m for m in dead_mounts), dead_mounts  # the pooled default storage
        assert _records_under(WORKERS, dead.home)

        # A crashes: its server (so nothing restarts next to it), its worker, its job.
        dead.kill(signal.SIGKILL)
        [worker] = worker_processes(dead.home)
        family = [worker, *worker.children(recursive=True)]
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):  # a short-lived child may be gone already
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=30)

        later = start_server(tmp_path / "B" / "home", **settings)
        _wait_for(lambda: not (_mounts_under(dead.home) & dead_mounts), "A's volumes unmounted")
        _wait_for(lambda: not any((NETNS / n).exists() for n in dead_nets), "A's namespaces deleted")
        assert not _records_under(NET_OWNERS, dead.home)
        _wait_for(lambda: not _mounts_under(dead_stage) and not dead_stage.exists(), "A's oci stage removed")
        assert not _records_under(WORKERS, dead.home)

        # C, alive all along, lost nothing.
        assert alive_worker.is_running()
        assert alive_mounts <= _mounts_under(alive.home), alive_mounts - _mounts_under(alive.home)
        assert all((NETNS / n).exists() for n in alive_nets), alive_nets
        assert alive_staged <= _mounts_under(alive_stage), alive_staged - _mounts_under(alive_stage)
        assert _records_under(WORKERS, alive.home)
        assert alive.job(alive_batch, 1)["state"] == "Running"
        with alive.client() as c:  # let C end cleanly: what it leaves would wait for the next worker
            c.patch(f"/api/v1/batches/{alive_batch}/cancel")
        _wait_for(lambda: not any(alive.home.glob("worker/*/jobs/*/vol")), "C's job ended")
    finally:
        for server in (later, dead, alive):
            if server is not None:
                server.stop()
