"""The oci runtime against real crun/runc containers and a real registry (no server)."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.containers.conftest import MARKER, Registry, push, sleepers

from corral.runtimes import MainRequest, MainResult
from corral.runtimes.oci import OciRuntime

MiB = 1024 * 1024
Make = Callable[..., MainRequest]
StartRuntime = Callable[..., Any]


@pytest.fixture(params=["crun", "runc"])
async def start_runtime(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[StartRuntime]:
    """Every behaviour with both OCI engines (crun with the hybrid-cgroup workaround where needed)."""
    started: list[OciRuntime] = []

    async def start(**images: object) -> OciRuntime:
        monkeypatch.setenv("CORRAL_HOME", str(tmp_path / f"home{len(started)}"))
        monkeypatch.setenv("CORRAL_IMAGES", registry.images_setting(oci_runtime=request.param, **images))
        rt = OciRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path / f"w{len(started)}")
        await rt.start()
        assert rt.engine is not None and rt.engine.name == request.param
        started.append(rt)
        return rt

    yield start
    for rt in started:
        await rt.close()


@pytest.fixture
def make(tmp_path: Path, test_image: str) -> Make:
    def build(command: str, **kwargs: object) -> MainRequest:
        scratch = tmp_path / f"job-{uuid.uuid4().hex[:6]}"
        for d in ("io", "tmp"):
            (scratch / d).mkdir(parents=True)
        fields: dict[str, object] = {
            "key": f"1.{uuid.uuid4().int % 10**6}.1", "command": ["/bin/bash", "-c", command],
            "io_dir": scratch / "io", "scratch": scratch, "tmp_dir": scratch / "tmp",
            "log_path": scratch / "main.log", "memory_bytes": 256 * MiB, "cores_mcpu": 1000,
            "image": test_image,
        }
        fields.update(kwargs)
        return MainRequest(**fields)  # type: ignore[arg-type]

    return build


def log_of(req: MainRequest) -> str:
    return req.log_path.read_text(errors="replace") if req.log_path.exists() else ""


async def run(rt: OciRuntime, req: MainRequest, cancel: asyncio.Event | None = None) -> MainResult:
    return await rt.run(req, cancel or asyncio.Event())


async def test_job_sees_the_image_not_the_host(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    req = make(
        "cat /etc/image-marker; echo var=$IMAGE_VAR; echo cwd=$(pwd); echo job=$JOB_VAR; "
        "test -e /etc/debian_version && echo HOST-LEAK; echo written > /io/out.txt",
        env={"JOB_VAR": "mine"},
    )
    result = await run(rt, req)
    out = log_of(req)
    assert result.state == "succeeded", (result, out)
    assert MARKER in out and "var=from-image" in out and "cwd=/srv" in out and "job=mine" in out
    assert "HOST-LEAK" not in out and Path("/etc/debian_version").exists()
    assert (req.io_dir / "out.txt").read_text() == "written\n"  # /io is the host's io dir


async def test_writes_do_not_change_the_cached_image(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    first = make("echo changed > /etc/image-marker && cat /etc/image-marker")
    assert (await run(rt, first)).state == "succeeded" and "changed" in log_of(first)
    second = make("cat /etc/image-marker")
    assert (await run(rt, second)).state == "succeeded"
    assert MARKER in log_of(second)


async def test_job_without_image_runs_in_the_process_sandbox(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    req = make("test -e /etc/debian_version && echo on-host", image=None)
    result = await run(rt, req)
    assert result.state == "succeeded" and "on-host" in log_of(req)


async def test_memory_limit_ends_in_out_of_memory(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    req = make("dd if=/dev/zero of=/dev/null bs=300M count=1 && echo survived", memory_bytes=64 * MiB)
    result = await run(rt, req)
    assert result.state == "failed" and result.out_of_memory, (result, log_of(req))
    assert "survived" not in log_of(req)
    small = make("dd if=/dev/zero of=/dev/null bs=8M count=1 && echo fits", memory_bytes=64 * MiB)
    ok = await run(rt, small)
    assert ok.state == "succeeded" and not ok.out_of_memory and "fits" in log_of(small)


@pytest.fixture
def host_server() -> Iterator[int]:
    """A TCP server on the host's loopback that answers 'hello'."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


async def test_network_none_cannot_reach_the_host_loopback(
    start_runtime: StartRuntime, make: Make, host_server: int
) -> None:
    rt = await start_runtime()
    probe = f"timeout 5 nc 127.0.0.1 {host_server} </dev/null && echo REACHED || echo unreachable"
    isolated = make(probe, network="none")
    assert (await run(rt, isolated)).state == "succeeded"
    assert "unreachable" in log_of(isolated) and "REACHED" not in log_of(isolated)
    private = make(probe + "; cat /proc/net/dev", network="private")
    assert (await run(rt, private)).state == "succeeded", log_of(private)
    assert "unreachable" in log_of(private) and "tap0" in log_of(private)  # own namespace with NAT device
    public = make(probe, network="public")  # NAT too unless the site opts into the host's network
    assert (await run(rt, public)).state == "succeeded"
    assert "unreachable" in log_of(public) and "REACHED" not in log_of(public)


async def test_io_beyond_the_storage_request_fails(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    req = make("dd if=/dev/zero of=/io/big bs=1M count=48 && echo wrote-all", storage_bytes=16 * MiB)
    await rt.prepare_io(req.io_dir, req.storage_bytes)
    try:
        result = await run(rt, req)
    finally:
        await rt.release_io(req.io_dir)
    assert result.state == "failed" and "wrote-all" not in log_of(req), log_of(req)
    assert "No space left" in log_of(req)
    fits = make("dd if=/dev/zero of=/io/ok bs=1M count=12 && echo wrote-all", storage_bytes=16 * MiB)
    await rt.prepare_io(fits.io_dir, fits.storage_bytes)
    try:
        assert (await run(rt, fits)).state == "succeeded" and "wrote-all" in log_of(fits)
    finally:
        await rt.release_io(fits.io_dir)
    assert not (fits.io_dir.parent / "io.ext4").exists() and not any(fits.io_dir.iterdir())


async def test_two_jobs_on_one_image_pull_it_once(
    start_runtime: StartRuntime, make: Make, image_layout: Path, registry: Registry
) -> None:
    repo = f"corral/once{uuid.uuid4().hex[:6]}"
    ref = push(image_layout, registry, repo)
    rt = await start_runtime()
    jobs = [make("cat /etc/image-marker", image=ref) for _ in range(2)]
    results = await asyncio.gather(*(run(rt, j) for j in jobs))
    assert [r.state for r in results] == ["succeeded", "succeeded"], [log_of(j) for j in jobs]
    assert rt.images is not None and rt.images.pulls == 1
    assert registry.blob_fetches(repo) == 2  # its one layer and its config, each fetched once


async def test_unknown_tag_is_an_error_naming_the_image(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    missing = make("true", image=make("true").image.rsplit(":", 1)[0] + ":no-such-tag")  # type: ignore[union-attr]
    result = await run(rt, missing)
    assert result.state == "error" and result.error is not None
    assert result.error.startswith("image not found: ") and "no-such-tag" in result.error


async def test_unreachable_registry_is_retried_then_an_error(start_runtime: StartRuntime, make: Make) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    rt = await start_runtime(pull_attempts=2, pull_retry_delay=0.05)
    result = await run(rt, make("true", image=f"127.0.0.1:{port}/corral/test:1"))
    assert result.state == "error" and result.error is not None
    assert "unreachable" in result.error and "tried 2 times" in result.error


async def test_cancel_kills_the_container(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    seconds = str(1000 + uuid.uuid4().int % 9000)  # tells this job's sleep from any other
    req = make(f"echo started; sleep {seconds}")
    cancel = asyncio.Event()
    task = asyncio.create_task(run(rt, req, cancel))
    for _ in range(600):
        if "started" in log_of(req):
            break
        await asyncio.sleep(0.05)
    assert "started" in log_of(req)
    started = sleepers(seconds)
    assert started, "the container's sleep is not running"
    cancel.set()
    result = await asyncio.wait_for(task, 30)
    assert result.state == "cancelled"
    for _ in range(200):
        if not set(sleepers(seconds)) & set(started):
            break
        await asyncio.sleep(0.05)
    assert not set(sleepers(seconds)) & set(started), "the container's processes survived the cancel"


CRASHING_WORKER = """
import asyncio, sys
from pathlib import Path
from corral.runtimes.base import MainRequest
from corral.runtimes.oci import OciRuntime

async def main() -> None:
    rt = OciRuntime(instance_name=sys.argv[1], work_dir=Path(sys.argv[2]))
    await rt.start()
    scratch = Path(sys.argv[2]) / "jobs" / "1.1.1"
    for d in ("io", "tmp"):
        (scratch / d).mkdir(parents=True)
    await rt.prepare_io(scratch / "io", 16 << 20)
    req = MainRequest(key="1.1.1", command=["sleep", sys.argv[4]], io_dir=scratch / "io", scratch=scratch,
                      tmp_dir=scratch / "tmp", log_path=scratch / "main.log", image=sys.argv[3])
    await rt.run(req, asyncio.Event())

asyncio.run(main())
"""


async def test_a_restarted_worker_clears_what_a_crashed_one_left(
    start_runtime: StartRuntime, tmp_path: Path, test_image: str
) -> None:
    import subprocess
    import sys

    first = await start_runtime()  # sets CORRAL_HOME / CORRAL_IMAGES for the crashing worker too
    await first.close()
    name, work = f"crash-{uuid.uuid4().hex[:6]}", tmp_path / "crash"
    seconds = str(1000 + uuid.uuid4().int % 9000)
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, name, str(work), test_image, seconds])
    try:
        for _ in range(600):
            if sleepers(seconds):
                break
            await asyncio.sleep(0.05)
        assert sleepers(seconds), "the crashing worker's container never started"
    finally:
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
    assert sleepers(seconds) and _mounts_under(work)  # the container and its mounts outlived the worker
    successor = OciRuntime(instance_name=name, work_dir=work)
    await successor.start()
    try:
        for _ in range(200):
            if not sleepers(seconds):
                break
            await asyncio.sleep(0.05)
        assert not sleepers(seconds) and not _mounts_under(work)
    finally:
        await successor.close()


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(prefix)]


async def test_cpu_and_pids_limits_hold_in_the_container(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    rt.pids_limit = 20
    forks = make("for i in $(seq 40); do sleep 1 & done; wait; echo all-forked", cores_mcpu=500)
    cancel = asyncio.Event()
    task = asyncio.create_task(run(rt, forks, cancel))
    quota = None
    for _ in range(2000):  # the job's cgroup exists while it runs: read the cpu limit the kernel enforces
        assert rt.cgroups is not None
        jobs = rt.cgroups.relative.lstrip("/")
        found = list(Path("/sys/fs/cgroup").glob(f"cpu*/{jobs}/*/cpu.cfs_quota_us"))
        found += list(Path("/sys/fs/cgroup").glob(f"{jobs}/*/cpu.max"))
        if found:
            quota = found[0].read_text().split()[0]
            break
        await asyncio.sleep(0.01)
    result = await asyncio.wait_for(task, 60)
    assert quota == "50000", quota  # 0.5 cpu of a 100 ms period
    assert result.state in ("succeeded", "failed")  # bash retries a refused fork, then gives up on it
    assert "fork: retry: Resource temporarily unavailable" in log_of(forks), log_of(forks)


async def test_unset_network_is_private_like_the_process_sandbox(
    start_runtime: StartRuntime, make: Make, host_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = await start_runtime()
    probe = f"timeout 5 nc 127.0.0.1 {host_server} </dev/null && echo REACHED || echo unreachable"
    req = make(probe, network=None)
    assert (await run(rt, req)).state == "succeeded" and "unreachable" in log_of(req), log_of(req)
    monkeypatch.setenv("CORRAL_JOBS", '{"host_network": true}')  # the site's opt-in: public is the host's
    opted = await start_runtime()
    public = make(probe, network="public")
    assert (await run(opted, public)).state == "succeeded"
    assert "hello" in log_of(public) and "REACHED" in log_of(public)


async def test_containers_run_under_the_seccomp_filter(start_runtime: StartRuntime, make: Make) -> None:
    rt = await start_runtime()
    req = make("grep -E '^Seccomp:' /proc/self/status")
    assert (await run(rt, req)).state == "succeeded"
    assert "Seccomp:\t2" in log_of(req), log_of(req)


async def test_the_images_user_runs_the_job_and_can_write_io_and_tmp(
    start_runtime: StartRuntime, make: Make, image_layout: Path, registry: Registry, tmp_path: Path
) -> None:
    import shutil
    import subprocess

    layout = tmp_path / "nobody-layout"
    shutil.copytree(image_layout, layout)
    subprocess.run(
        ["umoci", "config", "--image", f"{layout}:test", "--config.user", "65534:65534"], check=True
    )
    ref = push(layout, registry, "corral/nobody")
    rt = await start_runtime()
    req = make("id -u; echo a > /io/a && echo b > /tmp/b && echo wrote; touch /etc/x || echo etc-refused",
               image=ref)
    user = rt.job_user(req.key)  # held by the attempt, as the worker does
    try:
        result = await run(rt, req)
    finally:
        rt.release_job_user(req.key)
    out = log_of(req)
    assert result.state == "succeeded", out
    assert out.splitlines()[0] == "65534" and "wrote" in out and "etc-refused" in out
    # The image's user is the attempt's own unprivileged uid on the host (its user namespace).
    assert user is not None
    assert (req.io_dir / "a").stat().st_uid == user.uid and (req.tmp_dir / "b").stat().st_gid == user.gid


async def test_cancel_while_the_image_is_pulled_ends_the_job_at_once(
    start_runtime: StartRuntime, make: Make
) -> None:
    silent = socket.socket()  # a "registry" that accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        rt = await start_runtime(pull_timeout=120)
        cancel = asyncio.Event()
        task = asyncio.create_task(run(rt, make("true", image=f"127.0.0.1:{port}/corral/test:1"), cancel))
        await asyncio.sleep(0.5)
        assert not task.done()
        cancel.set()
        result = await asyncio.wait_for(task, 10)
        assert result.state == "cancelled"
        await asyncio.wait_for(rt.close(), 10)  # the abandoned pull is stopped, not left to time out
        assert not _processes_mentioning(f"127.0.0.1:{port}")
    finally:
        silent.close()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
