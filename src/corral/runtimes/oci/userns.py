"""Containers in a user namespace: the image's user is the job's unprivileged uid on the host.

Each container gets 65536 ids. The image's user (root for most images) maps to the attempt's own uid
(runtimes/identity.py), so what it writes on /io is the job's on the host and the output step (run as
that uid) can copy it; every other id of the image maps into a range of the worker's that no account
uses. Root in a container is therefore not root on the host: a host file owned by root stays out of
its reach whatever gets bound in.

The image cache stays as unpacked (owned by root): the container's root file system is an overlay
whose lower layer is an *idmapped mount* of the cached image (Linux >= 5.19 and a file system that
allows it: ext4, xfs, btrfs, tmpfs >= 6.3), made with the same mapping, so the image's root-owned files
look root-owned inside and nothing is copied or chowned per job. The overlay's upper layer (the
container's own writes) is written with the host ids, i.e. the job's uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from corral.runtimes.identity import JOB_UID_BASE, JobUser
from corral.runtimes.libc import libc as load_libc
from corral.runtimes.volume import mount, unmount

CONTAINER_IDS = 65536  # ids 0..65535 inside: every user an image is likely to name
ID_RANGE_BASE = 0x20000000  # the ranges of other image users: above subordinate ids, below job uids
ID_RANGES = (JOB_UID_BASE - ID_RANGE_BASE) // CONTAINER_IDS

# x86_64 and aarch64 share the numbers of these newer system calls (generic table).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000
MOUNT_ATTR_IDMAP, MOUNT_ATTR_RDONLY = 0x00100000, 0x1
MOVE_MOUNT_F_EMPTY_PATH = 4

Span = tuple[int, int, int]  # (inside, host, size), as in /proc/<pid>/uid_map


# Inside its user namespace the container's runtime resolves paths as the job's uid, which cannot
# traverse the worker's private (0700) scratch: its root, /io and /tmp are bound under here (0711).
STAGE_ROOT = Path("/run/corral-oci")
MS_BIND, MS_REC = 4096, 16384


class IdMapError(OSError):
    pass


def instance_stage(instance: str) -> Path:
    return STAGE_ROOT / instance.replace("/", "_")


def stage_dir(instance: str, key: str) -> Path:
    """/run/corral-oci/<instance>/<key>/, every level traversable by anyone and listable by root only."""
    path = instance_stage(instance) / key.replace("/", "_")
    for level in (STAGE_ROOT, path.parent, path):
        level.mkdir(mode=0o711, exist_ok=True)
        level.chmod(0o711)  # whatever the umask
    return path


def stage_bind(source: Path, stage: Path, name: str) -> Path:
    target = stage / name
    target.mkdir(exist_ok=True)
    mount(str(source), target, "", "", MS_BIND | MS_REC)
    return target


def _spans(inside_user: int, job_id: int, spare_base: int) -> tuple[Span, ...]:
    """inside_user -> job_id, every other id below CONTAINER_IDS -> spare_base + id."""
    spans: list[Span] = []
    if inside_user > 0:
        spans.append((0, spare_base, inside_user))
    spans.append((inside_user, job_id, 1))
    rest = inside_user + 1
    if rest < CONTAINER_IDS:
        spans.append((rest, spare_base + rest, CONTAINER_IDS - rest))
    return tuple(spans)


@dataclass(frozen=True)
class IdMapping:
    uids: tuple[Span, ...]
    gids: tuple[Span, ...]

    def oci(self) -> dict[str, list[dict[str, int]]]:
        """`linux.uidMappings` / `gidMappings` of config.json."""
        def entries(spans: tuple[Span, ...]) -> list[dict[str, int]]:
            return [{"containerID": i, "hostID": h, "size": n} for i, h, n in spans]
        return {"uidMappings": entries(self.uids), "gidMappings": entries(self.gids)}

    def host_uid(self, inside: int) -> int | None:
        for i, h, n in self.uids:
            if i <= inside < i + n:
                return h + inside - i
        return None


def id_mapping(user: JobUser, image_uid: int, image_gid: int) -> IdMapping:
    """The container's ids for the attempt whose host identity is `user`, running the image's user."""
    if not (0 <= image_uid < CONTAINER_IDS and 0 <= image_gid < CONTAINER_IDS):
        raise IdMapError(0, f"the image's user {image_uid}:{image_gid} is outside the container's "
                            f"ids 0..{CONTAINER_IDS - 1}")
    # Distinct per attempt slot of one worker; workers on one host spread over the ranges by name.
    spare = ID_RANGE_BASE + ((user.uid - JOB_UID_BASE) % ID_RANGES) * CONTAINER_IDS
    return IdMapping(_spans(image_uid, user.uid, spare), _spans(image_gid, user.gid, spare))


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _fail(what: str, path: str) -> IdMapError:
    err = ctypes.get_errno()
    return IdMapError(err, f"{what} {path}: {os.strerror(err)}")


def mount_idmapped(source: str, target: Path, userns_fd: int, *, readonly: bool = True) -> None:
    """Attach at `target` a view of `source` whose file owners are shifted by the namespace's mapping."""
    libc = load_libc()
    fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    if fd < 0:
        raise _fail("open_tree", source)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, userns_fd)
        if libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)):
            raise _fail("idmapping a mount of", source)
        if libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, str(target).encode(), MOVE_MOUNT_F_EMPTY_PATH):
            raise _fail("move_mount to", str(target))
    finally:
        os.close(fd)


async def _new_user_namespace(mapping: IdMapping) -> int:
    """An fd of a user namespace with `mapping` (its first process exits; the fd keeps it alive)."""
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--user", "/bin/sh", "-c", "echo ready; exec cat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if await proc.stdout.readline() != b"ready\n":
            raise IdMapError(0, "could not create a user namespace (unshare --user failed)")
        for name, spans in (("uid_map", mapping.uids), ("gid_map", mapping.gids)):
            Path(f"/proc/{proc.pid}/{name}").write_text("".join(f"{i} {h} {n}\n" for i, h, n in spans))
        return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class UserNamespaces:
    """One namespace fd per mapping in use (a worker has few: its slots times its images' users)."""

    def __init__(self) -> None:
        self._fds: dict[IdMapping, int] = {}
        self._lock = asyncio.Lock()

    async def fd(self, mapping: IdMapping) -> int:
        found = self._fds.get(mapping)
        if found is not None:
            return found
        async with self._lock:
            if mapping not in self._fds:
                self._fds[mapping] = await _new_user_namespace(mapping)
            return self._fds[mapping]

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


async def probe_idmapped_mounts(directory: Path) -> str | None:
    """None if an idmapped mount of `directory` works here, else why not."""
    probe = directory / f".idmap-probe-{os.getpid()}"
    source = directory / f".idmap-source-{os.getpid()}"
    namespaces = UserNamespaces()
    try:
        probe.mkdir(exist_ok=True)
        source.mkdir(exist_ok=True)
        fd = await namespaces.fd(id_mapping(JobUser(JOB_UID_BASE, JOB_UID_BASE), 0, 0))
        mount_idmapped(str(source), probe, fd)
        shifted = probe.stat().st_uid
        unmount(probe)
        if shifted != JOB_UID_BASE:
            return f"an idmapped mount showed owner {shifted}, not {JOB_UID_BASE}"
        return None
    except OSError as exc:
        return str(exc.strerror or exc)
    finally:
        namespaces.close()
        for d in (probe, source):
            with contextlib.suppress(OSError):
                d.rmdir()
