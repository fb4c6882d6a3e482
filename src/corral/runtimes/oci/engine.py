"""The OCI runtime binary (crun or runc), chosen at run time by a probe container, and its commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.runtimes.base import RuntimeUnavailable

log = logging.getLogger(__name__)

# crun refuses hybrid cgroups (v1 controllers + an empty v2 mount): hide the v2 mount from it,
# in a private mount namespace so the host keeps it.
HIDE_UNIFIED = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
UNIFIED = Path("/sys/fs/cgroup/unified")


def hybrid_cgroups() -> bool:
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    kinds = {line.partition(" - ")[2].split()[0] for line in mounts if " - " in line}
    return "cgroup" in kinds and any(f" {UNIFIED} " in line and "cgroup2" in line for line in mounts)


@dataclass(frozen=True)
class Engine:
    name: str  # crun | runc
    path: str
    state_dir: Path  # --root: this worker's containers only
    private_mounts: bool  # crun on hybrid cgroups

    def _base(self) -> list[str]:
        return [self.path, "--root", str(self.state_dir)]

    def run_argv(self, bundle: Path, container_id: str) -> list[str]:
        argv = [*self._base(), "run", "--bundle", str(bundle), container_id]
        if self.private_mounts:
            unshare = shutil.which("unshare") or "/usr/bin/unshare"
            return [unshare, "-m", "--propagation", "private", "/bin/sh", "-c", HIDE_UNIFIED, "sh", *argv]
        return argv

    def delete_argv(self, container_id: str) -> list[str]:
        return [*self._base(), "delete", "--force", container_id]


def _probe_bundle(bundle: Path) -> None:
    """A container of the host's /usr, /bin and /lib, read-only, running /bin/true."""
    rootfs = bundle / "rootfs"
    for d in ("proc", "dev"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    mounts: list[dict[str, object]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    ]
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            (rootfs / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            mounts.append({"destination": f"/{name}", "type": "bind", "source": str(host),
                           "options": ["rbind", "ro"]})
    config = {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/",
                    "env": ["PATH=/usr/bin:/bin"], "noNewPrivileges": True},
        "root": {"path": str(rootfs), "readonly": False},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))


async def _works(engine: Engine, work_dir: Path) -> str | None:
    """None if the engine runs a container here, else why not."""
    bundle = work_dir / f"probe-{engine.name}"
    shutil.rmtree(bundle, ignore_errors=True)
    _probe_bundle(bundle)
    proc = await asyncio.create_subprocess_exec(
        *engine.run_argv(bundle, f"corral-probe-{os.getpid()}-{engine.name}"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    shutil.rmtree(bundle, ignore_errors=True)
    if proc.returncode == 0:
        return None
    return out.decode(errors="replace").strip() or f"exit code {proc.returncode}"


async def choose_engine(preference: str, work_dir: Path) -> Engine:
    """crun (faster) if it works here, else runc; `preference` names one to insist on."""
    names = ["crun", "runc"] if preference == "auto" else [preference]
    hybrid = hybrid_cgroups()
    problems = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            problems.append(f"{name}: not installed")
            continue
        engine = Engine(name, path, work_dir / "oci-state" / name, private_mounts=hybrid and name == "crun")
        engine.state_dir.mkdir(parents=True, exist_ok=True)
        why = await _works(engine, work_dir)
        if why is None:
            log.info("oci runtime: %s (%s)%s", name, path, ", v2 mount hidden (hybrid cgroups)"
                     if engine.private_mounts else "")
            return engine
        problems.append(f"{name}: {why}")
    raise RuntimeUnavailable(
        "the oci runtime needs crun or runc that can run containers here (Debian/Ubuntu: apt-get install "
        "crun runc skopeo umoci): " + "; ".join(problems)
    )
