"""The host-wide reaper's liveness rules, on real namespaces, mounts, locks and processes (root only).

Each case plants a leftover whose owner is live, dead or unknown and checks /run/netns and the mount
table afterwards: only provably dead owners' things go.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.runtimes.owners import LOCK, NETNS_OWNERS_DIR, owner, worker_record_path, write_record
from corral.worker.reaper import reap_dead_workers

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("ip") is None),
    reason="needs root and iproute2",
)
NETNS = Path("/run/netns")


@pytest.fixture
def names() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        (NETNS_OWNERS_DIR / name).unlink(missing_ok=True)


def _namespace(names: list[str]) -> str:
    name = f"corral-{uuid.uuid4().hex[:12]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    names.append(name)
    return name


def _dead_pid() -> tuple[int, int | None]:
    """A pid that has exited (with the start time it had), as a crashed worker's record holds."""
    proc = subprocess.Popen([sys.executable, "-c", "import os; print(open('/proc/self/stat').read())"],
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    return proc.pid, int(out.rsplit(")", 1)[1].split()[19])


def _work_dir(tmp_path: Path, name: str, *, locked: bool) -> tuple[Path, int]:
    work_dir = tmp_path / name
    work_dir.mkdir()
    fd = os.open(work_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if locked:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return work_dir, fd


def _mounted(point: Path) -> bool:
    table = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(point) for line in table)


def test_only_provably_dead_owners_lose_their_namespaces_and_mounts(tmp_path: Path, names: list[str]) -> None:
    me, me_fd = _work_dir(tmp_path, "me", locked=True)
    live, live_fd = _work_dir(tmp_path, "live", locked=True)
    dead, dead_fd = _work_dir(tmp_path, "dead", locked=False)
    dead_pid, dead_start = _dead_pid()
    gone = tmp_path / "gone"  # its work dir was deleted: only a dead pid proves it dead
    try:
        live_net, dead_net, gone_net, gone_alive_net = (_namespace(names) for _ in range(4))
        write_record(NETNS_OWNERS_DIR / live_net, owner(live))
        dead_owner = {**owner(dead), "pid": dead_pid, "start": dead_start}
        write_record(NETNS_OWNERS_DIR / dead_net, dead_owner)
        write_record(worker_record_path(dead), dead_owner)
        write_record(NETNS_OWNERS_DIR / gone_net, {**owner(gone), "pid": dead_pid, "start": dead_start})
        write_record(NETNS_OWNERS_DIR / gone_alive_net, owner(gone))  # our (live) pid: maybe alive
        # Mounts: in the dead worker's dir and in the live one's (tmpfs stands for a volume).
        for work_dir in (dead, live):
            (work_dir / "volumes" / "v0").mkdir(parents=True)
            point = str(work_dir / "volumes/v0")
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "reaper-test", point], check=True)

        reaped = reap_dead_workers(me)

        assert not (NETNS / dead_net).exists() and not (NETNS_OWNERS_DIR / dead_net).exists()
        assert not (NETNS / gone_net).exists()
        assert not _mounted(dead / "volumes/v0")
        assert not worker_record_path(dead).exists()
        assert str(dead) in reaped.workers
        assert (NETNS / live_net).exists() and (NETNS_OWNERS_DIR / live_net).exists()
        assert (NETNS / gone_alive_net).exists()
        assert _mounted(live / "volumes/v0")
    finally:
        for work_dir in (dead, live):
            subprocess.run(["umount", "-l", str(work_dir / "volumes/v0")], capture_output=True, check=False)
        for fd in (me_fd, live_fd, dead_fd):
            os.close(fd)


def test_unrecorded_namespaces_go_only_when_nothing_uses_them(tmp_path: Path, names: list[str]) -> None:
    idle, occupied = _namespace(names), _namespace(names)
    inside = subprocess.Popen(["ip", "netns", "exec", occupied, "sleep", "300"])
    try:
        deadline = time.monotonic() + 60
        target = os.stat(NETNS / occupied).st_ino
        while os.stat(f"/proc/{inside.pid}/ns/net").st_ino != target:
            assert time.monotonic() < deadline, "the process never entered its namespace"
            time.sleep(0.05)
        young = reap_dead_workers(tmp_path, orphan_age=3600)
        assert idle not in young.namespaces and (NETNS / idle).exists()  # too young to be an orphan
        # An orphan must be a few seconds old (never a namespace a live worker is still setting up).
        while time.time() - os.stat(NETNS / idle).st_mtime <= 5:
            time.sleep(0.2)
        reaped = reap_dead_workers(tmp_path, orphan_age=5)
        assert idle in reaped.namespaces and not (NETNS / idle).exists()
        assert (NETNS / occupied).exists()  # a process is inside
    finally:
        inside.kill()
        inside.wait()
