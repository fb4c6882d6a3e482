"""Whom a job runs as on the host: a uid of its own when the worker is root, else the worker's user.

A root worker gives every running attempt a distinct unprivileged uid (and gid) from a range no account
uses, so a job can read neither root's files nor another job's /io and /tmp (0700, owned by that job's
uid), and cannot signal or trace another job. A worker that is not root runs jobs as its own user inside
a user namespace (bubblewrap's default): the job has no more rights than the worker's account.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

# Far above any account (Debian's subordinate ranges start at 100000 and rarely pass 2^28).
JOB_UID_BASE = 0x60000000
SLOTS_PER_WORKER = 4096
WORKER_SPREAD = 4096  # workers on one host get disjoint-looking ranges from their instance name


@dataclass(frozen=True)
class JobUser:
    uid: int
    gid: int


class JobUsers:
    """Hands out uids to running attempts; `None` everywhere when the worker is not root."""

    def __init__(self, instance_name: str, *, privileged: bool | None = None) -> None:
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        spread = zlib.crc32(instance_name.encode()) % WORKER_SPREAD
        self.base = JOB_UID_BASE + spread * SLOTS_PER_WORKER
        self._by_key: dict[str, JobUser] = {}
        self._holds: dict[str, int] = {}
        self._free: list[int] = []
        self._next = 0

    def acquire(self, key: str) -> JobUser | None:
        """The attempt's uid; held until as many `release` calls (the attempt and its main step hold it)."""
        if not self.privileged:
            return None
        found = self._by_key.get(key)
        self._holds[key] = self._holds.get(key, 0) + 1
        if found is not None:
            return found
        if self._free:
            slot = self._free.pop()
        else:
            slot, self._next = self._next % SLOTS_PER_WORKER, self._next + 1
        user = JobUser(self.base + slot, self.base + slot)
        self._by_key[key] = user
        return user

    def release(self, key: str) -> None:
        holds = self._holds.pop(key, 0) - 1
        if holds > 0:
            self._holds[key] = holds
            return
        user = self._by_key.pop(key, None)
        if user is not None:
            self._free.append(user.uid - self.base)


def give_to(user: JobUser | None, *paths: os.PathLike[str] | str, recursive: bool = False) -> None:
    """chown the job's own directories (and, with `recursive`, what the input step copied into them)."""
    if user is None:
        return
    for path in paths:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
        os.chmod(path, 0o700)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
