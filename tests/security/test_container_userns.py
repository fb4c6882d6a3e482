"""Containers run in a user namespace: the image's root is the job's unprivileged uid on the host.

Real crun and runc, a real registry and image; each test checks the HOST afterwards (owners, contents),
not only what the container printed. A control run with `[images] user_namespace = false` shows the
same attack does change the host without the namespace, so these tests can fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.containers.conftest import Registry, image_layout, registry, test_image  # noqa: F401

from corral.runtimes import MainRequest
from corral.runtimes.identity import JobUser
from corral.runtimes.oci import OciRuntime
from corral.runtimes.oci.userns import ID_RANGE_BASE, STAGE_ROOT

MiB = 1024 * 1024
StartRuntime = Callable[..., Any]

# Host files owned by root, put where the container's binds (/io, /tmp) show them.
ATTACK = (
    "id -u; stat -c 'owner-inside=%u' /io/root-file; "
    "echo pwned > /io/root-file && echo WROTE-FILE; "
    "echo pwned >> /io/root-dir/inner && echo APPENDED; "
    "touch /io/root-dir/new && echo CREATED-IN-ROOT-DIR; "
    "chmod 666 /io/root-file && echo CHMODDED; chown 0:0 /io/root-file && echo CHOWNED; "
    "cat /tmp/root-secret && echo READ-SECRET; "
    "echo pwned > /etc/resolv.conf && echo WROTE-RESOLV; "
    "mount -o remount,rw /sys && echo REMOUNTED-SYS; true"
)
SUCCESSES = ("WROTE-FILE", "APPENDED", "CREATED-IN-ROOT-DIR", "CHMODDED", "CHOWNED", "READ-SECRET",
             "WROTE-RESOLV", "REMOUNTED-SYS")


@pytest.fixture(params=["crun", "runc"])
async def start_runtime(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    request: pytest.FixtureRequest,
) -> AsyncIterator[StartRuntime]:
    started: list[OciRuntime] = []

    async def start(**images: object) -> OciRuntime:
        monkeypatch.setenv("CORRAL_HOME", str(tmp_path / f"home{len(started)}"))
        monkeypatch.setenv("CORRAL_IMAGES", registry.images_setting(oci_runtime=request.param, **images))
        name, work = f"userns-{uuid.uuid4().hex[:8]}", tmp_path / f"w{len(started)}"
        rt = OciRuntime(instance_name=name, work_dir=work)
        await rt.start()
        started.append(rt)
        return rt

    yield start
    for rt in started:
        await rt.close()


def _request(tmp_path: Path, image: str, command: str) -> MainRequest:
    scratch = tmp_path / f"job-{uuid.uuid4().hex[:6]}"
    for d in ("io", "tmp"):
        (scratch / d).mkdir(parents=True)
    return MainRequest(
        key=f"1.{uuid.uuid4().int % 10**6}.1", command=["/bin/bash", "-c", command], io_dir=scratch / "io",
        scratch=scratch, tmp_dir=scratch / "tmp", log_path=scratch / "main.log", memory_bytes=256 * MiB,
        cores_mcpu=1000, image=image,
    )


async def _run_as_attempt(rt: OciRuntime, req: MainRequest) -> tuple[str, JobUser | None]:
    """Run like the worker does: the attempt holds its uid around the main step."""
    user = rt.job_user(req.key)
    try:
        result = await rt.run(req, asyncio.Event())
    finally:
        rt.release_job_user(req.key)
    log = req.log_path.read_text(errors="replace")
    assert result.state == "succeeded", (result, log)
    return log, user


def _plant_root_files(req: MainRequest) -> None:
    (req.io_dir / "root-file").write_text("host\n")
    (req.io_dir / "root-dir").mkdir()
    (req.io_dir / "root-dir" / "inner").write_text("host\n")
    secret = req.tmp_dir / "root-secret"
    secret.write_text("host-secret-" + uuid.uuid4().hex)
    secret.chmod(0o600)
    for path in (req.io_dir / "root-file", req.io_dir / "root-dir", req.io_dir / "root-dir/inner", secret):
        os.chown(path, 0, 0)


async def test_container_root_cannot_write_host_root_files_through_its_binds(
    start_runtime: StartRuntime, tmp_path: Path, test_image: str  # noqa: F811
) -> None:
    rt = await start_runtime()
    req = _request(tmp_path, test_image, ATTACK)
    _plant_root_files(req)
    secret = (req.tmp_dir / "root-secret").read_text()
    log, user = await _run_as_attempt(rt, req)
    assert user is not None and log.splitlines()[0] == "0"  # root inside...
    assert "owner-inside=65534" in log  # ...but the host's root is nobody to it
    for success in SUCCESSES:
        assert success not in log, log
    assert secret not in log
    # The host: every root-owned file as it was.
    for path in (req.io_dir / "root-file", req.io_dir / "root-dir" / "inner"):
        assert path.read_text() == "host\n"
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
    assert not (req.io_dir / "root-dir" / "new").exists()
    assert (req.tmp_dir / "root-secret").stat().st_mode & 0o777 == 0o600


async def test_without_the_user_namespace_the_same_attack_changes_the_host(
    start_runtime: StartRuntime, tmp_path: Path, test_image: str  # noqa: F811
) -> None:
    """The control: proves the attack above is real (container root = host root without the namespace)."""
    rt = await start_runtime(user_namespace=False)
    req = _request(tmp_path, test_image, ATTACK)
    _plant_root_files(req)
    log, _user = await _run_as_attempt(rt, req)
    assert "WROTE-FILE" in log and (req.io_dir / "root-file").read_text() == "pwned\n"


async def test_uid_map_shows_the_mapping_and_outputs_belong_to_the_jobs_uid(
    start_runtime: StartRuntime, tmp_path: Path, test_image: str  # noqa: F811
) -> None:
    rt = await start_runtime()
    req = _request(
        tmp_path, test_image,
        "cat /proc/self/uid_map /proc/self/gid_map; echo made > /io/made; mkdir /io/dir; "
        "echo t > /tmp/t; touch /made-in-root && echo root-fs-writable",
    )
    log, user = await _run_as_attempt(rt, req)
    assert user is not None and user.uid >= 0x60000000
    maps = [line.split() for line in log.splitlines() if len(line.split()) == 3]
    uid_map, gid_map = maps[: len(maps) // 2], maps[len(maps) // 2:]
    assert ["0", str(user.uid), "1"] in uid_map and ["0", str(user.gid), "1"] in gid_map
    assert sum(int(size) for _inside, _host, size in uid_map) == 65536
    for _inside, host, _size in uid_map + gid_map:  # no host id below the unprivileged ranges
        assert int(host) >= ID_RANGE_BASE, uid_map
    assert "root-fs-writable" in log  # its own root file system is still its to change
    # The host: what the container's root made is the job's uid's.
    for path in (req.io_dir / "made", req.io_dir / "dir", req.tmp_dir / "t"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (user.uid, user.gid), path
    assert not any(STAGE_ROOT.glob(f"{rt.instance_name}/*"))  # its stage is gone with it
