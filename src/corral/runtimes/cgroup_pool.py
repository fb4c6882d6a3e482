"""Job cgroups reused from one job to the next on cgroup v1, instead of made and removed for each.

Making a job's cgroups (a directory in each v1 hierarchy it uses, its limits written) and removing
them after it is kernel work on the worker's loop for every job, each step under the kernel's one
cgroup mutex. Here a job's cgroups, once its processes are gone, wait for the next job with the same
limits (memory, CPU, pids: nothing is rewritten, so no limit of one job can stay for another):

* only a clean one is kept (V1JobCgroup.clean_after_job): its limits as made (a host-runtime job may
  write them), no OOM kill (v1 cannot reset that count), at most cgroups.RESET_SLACK still charged (a
  job's page cache or tmpfs files left behind are more: that cgroup is removed); its CPU time zeroed;
* a kept one keeps its last job's name until the next job renames it to its own (a job's cgroups are
  always named by its key), and its peak memory restarts then;
* at most KEEP are kept, and none idle for long (the runtime evicts those idle KEEP_IDLE seconds, so a
  worker killed while idle leaves none); the rest, and every one when the runtime closes, are removed.
  After a crash they go with the rest of the dead worker's cgroups: at its restart under the same name
  (Cgroups.remove_stale), or when any worker starts on the host (worker/cleanup.py, which removes each
  recorded cgroup tree whole).

cgroup v2 reads peak memory per open file: there every job gets a new cgroup, as everywhere before.
"""

from __future__ import annotations

import contextlib
import logging
import time

from corral.runtimes.cgroups import Cgroups, JobCgroup, Limits, V1JobCgroup, safe_name

log = logging.getLogger(__name__)
KEEP = 64  # idle cgroups kept at most: more than a worker runs at once, with some ending late
KEEP_IDLE = 5.0  # seconds an idle cgroup is kept: a stream of short jobs reuses them well within it


class CgroupPool:
    def __init__(self, cgroups: Cgroups, keep: int = KEEP) -> None:
        self.cgroups = cgroups
        self.keep = keep
        self.idle: dict[Limits, list[V1JobCgroup]] = {}  # made with these limits, last kept last
        self.by_name: dict[str, V1JobCgroup] = {}  # the same, by their (last job's) name
        self.kept_at: dict[int, float] = {}  # id(group) -> when it was kept (monotonic)
        self.made = 0  # for tests and benches
        self.reused = 0
        self._closed = False

    def take(self, name: str, limits: Limits) -> JobCgroup:
        """A cgroup named `name` with exactly `limits`: an idle one made with them, or a new one."""
        kept = self.by_name.get(safe_name(name))
        if kept is not None:  # the same name again (a job key run twice): that one, or it goes
            self._unkeep(kept)
            if kept.limits == limits and self._reused(kept, name):
                return kept
            if not kept.remove():
                raise OSError(f"an idle cgroup named {name!r} is still busy")
        while idle := self.idle.get(limits):
            group = idle[-1]  # the last kept: the likeliest still in the CPU's caches
            self._unkeep(group)
            if self._reused(group, name):
                return group
            self._remove(group)
        self.made += 1
        return self.cgroups.create(name, limits)

    def give_back(self, group: JobCgroup) -> bool:
        """The job is over: keep its cgroup for a next job if it is clean, else remove it. False while
        processes are still in it (the caller kills them and asks again)."""
        if group.pids():
            return False
        if isinstance(group, V1JobCgroup) and group.limits is not None and self._keeps():
            try:
                if group.clean_after_job():
                    self.idle.setdefault(group.limits, []).append(group)
                    self.by_name[group.name] = group
                    self.kept_at[id(group)] = time.monotonic()
                    return True
            except OSError as exc:
                log.debug("job cgroup not reusable (%s): removed", exc)
            group.limits = None  # not to be kept if asked again
        return group.remove()

    def idle_count(self) -> int:
        return len(self.by_name)

    def evict_idle(self, older_than: float = KEEP_IDLE) -> int:
        """Remove the cgroups kept longer than `older_than` seconds; how many are still kept."""
        now = time.monotonic()
        for group in list(self.by_name.values()):
            if now - self.kept_at.get(id(group), now) >= older_than:
                self._unkeep(group)
                self._remove(group)
        return len(self.by_name)

    def close(self) -> None:
        """Remove every idle cgroup; from now on every one given back is removed."""
        self._closed = True
        self.evict_idle(0)

    def _keeps(self) -> bool:
        return not self._closed and len(self.by_name) < self.keep

    def _reused(self, group: V1JobCgroup, name: str) -> bool:
        """`group` renamed `name` and its peak memory restarted, for the next job; False if refused."""
        try:
            group.rename(name)
            group.restart_peak()
        except OSError as exc:
            log.debug("idle job cgroup not reusable (%s): removed", exc)
            return False
        self.reused += 1
        return True

    def _unkeep(self, group: V1JobCgroup) -> None:
        del self.by_name[group.name]
        self.kept_at.pop(id(group), None)
        assert group.limits is not None
        self.idle[group.limits].remove(group)

    @staticmethod
    def _remove(group: JobCgroup) -> None:
        with contextlib.suppress(OSError):
            group.remove()
