"""The OCI runtime spec (config.json) of one job's container: its root, mounts, process and namespaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.images.pull import ImageInfo
from corral.runtimes.base import DEFAULT_PATH, MainRequest, without_rc_files
from corral.runtimes.network import Plumbing
from corral.runtimes.oci.userns import IdMapping
from corral.runtimes.seccomp import CLONE_NAMESPACE_BITS, DENIED_SYSCALLS

# Docker's default capability set: enough for package managers and servers, no admin powers.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]
# The process sandbox's filter (runtimes/seccomp.py) in the OCI spec's form: what Docker's default denies.
SECCOMP: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        *({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
           "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}
          for bit in CLONE_NAMESPACE_BITS),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
BASE_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
]


def container_env(request: MainRequest, image: ImageInfo) -> list[str]:
    """The image's environment, then Corral's defaults where the image says nothing, then the job's own."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOME": "/root" if image.uid == 0 else "/tmp"}
    for item in image.env:
        name, _, value = item.partition("=")
        env[name] = value
    env.setdefault("TMPDIR", "/tmp")
    env.update(request.env)
    return [f"{k}={v}" for k, v in env.items()]


def bind(source: Path, destination: str, *, readonly: bool = False) -> dict[str, Any]:
    options = ["rbind", "nosuid", "nodev", "ro" if readonly else "rw"]
    return {"destination": destination, "type": "bind", "source": str(source), "options": options}


def container_config(
    request: MainRequest,
    image: ImageInfo,
    rootfs: Path,
    *,
    cgroups_path: str | None,
    netns_path: str | None,
    extra_mounts: list[dict[str, Any]],
    network: Plumbing = "host",
    ids: IdMapping | None = None,
) -> dict[str, Any]:
    """config.json for `runc run` / `crun run`; limits are on the job's cgroup, the parent of cgroups_path.

    With `ids` the container has its own user namespace (its root is the job's uid on the host).
    """
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if ids is not None:
        namespaces.insert(0, {"type": "user"})
    if network != "host":  # none: an empty namespace; nat: the one slirp4netns serves (netns_path)
        namespaces.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "seccomp": SECCOMP,
        **(ids.oci() if ids is not None else {}),
    }
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    base = BASE_MOUNTS
    if ids is not None and (network == "host" or netns_path):
        # sysfs belongs to the network namespace: one the container's user namespace does not own (the
        # host's, a pooled private one) cannot be mounted from it. A read-only bind of the host's /sys,
        # as crun falls back to by itself and rootless engines do. Recursive: in a user namespace the
        # kernel refuses a plain bind of a mount whose submounts (cgroups, ...) it would uncover.
        base = [*BASE_MOUNTS[:-1], {"destination": "/sys", "type": "bind", "source": "/sys",
                                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    mounts = [
        *base,
        bind(request.io_dir, "/io"),
        bind(request.tmp_dir, "/tmp"),
        *extra_mounts,
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": image.uid, "gid": image.gid},
            "args": without_rc_files(request.command),
            "env": container_env(request, image),
            "cwd": image.cwd or "/",
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "job",
        "mounts": mounts,
        "linux": linux,
    }
