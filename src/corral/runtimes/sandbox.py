"""bubblewrap command lines: the host's filesystem read-only, the job's io dir at /io, its own /tmp.

A root worker starts bubblewrap as root (so it can bind any path) and bubblewrap execs `setpriv`,
which becomes the job's own unprivileged uid with no capabilities, an empty bounding set and
no_new_privs before it execs the job; the seccomp filter is already loaded by then. Secrets are not
visible at all: CORRAL_HOME, the worker's directory and directories only root may enter (such as
/root) are covered by empty tmpfs mounts, with only the paths jobs are meant to use (the worker's
Python, the user's environment on the embedded default) bound back read-only.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.runtimes.base import MainRequest, RuntimeUnavailable, without_rc_files
from corral.runtimes.identity import JobUser

# Mounted fresh or per job, never bound from the host.
_OWN_MOUNTS = frozenset({"proc", "dev", "tmp", "io", "sys"})
# What the job keeps after setpriv: nothing; bwrap keeps only what setpriv needs (and to enter /io).
_SETPRIV_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_OVERRIDE")

# Joins the job's cgroups, then execs the sandbox: limits hold before the job's first instruction.
# argv: sh -c SCRIPT sh N procs_file_1 .. procs_file_N command...
ENTER_CGROUPS = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'echo $$ > "$1" || { echo "corral: cannot join cgroup $1" >&2; exit 125; }; '
    "shift; n=$((n-1)); done; exec \"$@\""
)


def find_bwrap() -> str:
    path = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)
    if path is None:
        raise RuntimeUnavailable(
            "the process runtime needs bubblewrap (bwrap), which is not installed: "
            "install it (Debian/Ubuntu: apt-get install bubblewrap) or run the worker with --runtime noop"
        )
    return path


def find_setpriv() -> str:
    path = shutil.which("setpriv") or ("/usr/bin/setpriv" if os.access("/usr/bin/setpriv", os.X_OK) else None)
    if path is None:
        raise RuntimeUnavailable(
            "a root worker runs each job as its own unprivileged user with setpriv (util-linux), which is "
            "not installed: apt-get install util-linux"
        )
    return path


@functools.cache
def root_layout() -> tuple[str, ...]:
    """The sandbox's / built from read-only binds of the host's top-level entries.

    Built rather than `--ro-bind / /` so that bwrap can create /io on its own tmpfs root
    (a mount point cannot be made inside a read-only bind).
    """
    args: list[str] = []
    with os.scandir("/") as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name in _OWN_MOUNTS:
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), entry.path]
            elif entry.name == "run" and entry.is_dir(follow_symlinks=False):
                args += _run_layout()
            elif entry.is_dir() or entry.is_file():
                args += ["--ro-bind", entry.path, entry.path]
    args += ["--ro-bind", "/sys", "/sys", "--proc", "/proc", "--dev", "/dev"]
    return tuple(args)


def _run_layout() -> list[str]:
    """/run: an empty tmpfs (read-only once the job's binds are in, `bwrap_argv`) keeping /run's symlinks
    (/run/shm) and, where /etc/resolv.conf points into /run (systemd-resolved), the resolver's directory.

    Host daemons' sockets under /run (a database's, D-Bus, munge, users' session buses) and Corral's own
    records are not the job's business: a read-only bind does not stop connect() on a socket. And each
    bind costs every sandbox's setup and teardown (/run entry by entry made a sandbox ~20 % slower here).
    A site whose jobs need one (SLURM clients: /run/munge) lists it in [jobs] visible_paths."""
    args = ["--tmpfs", "/run"]
    with os.scandir("/run") as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), entry.path]
    resolver = Path(os.path.realpath("/etc/resolv.conf")).parent
    if _within(resolver, Path("/run")) and resolver != Path("/run") and resolver.is_dir():
        args += ["--ro-bind", str(resolver), str(resolver)]
    return args


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost directory above `path` that others may not enter (e.g. /root, mode 0700)."""
    for parent in reversed(path.parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return parent
    return None


@dataclass(frozen=True)
class SandboxView:
    """What a job sees of the host besides the read-only root: hidden secrets, paths bound back."""

    hidden: tuple[Path, ...] = ()  # covered by an empty tmpfs
    visible: tuple[Path, ...] = ()  # bound read-only at the same path, even under a hidden or private dir

    @classmethod
    def build(cls, secrets: Iterable[Path], shared: Iterable[Path], *, job_has_own_uid: bool) -> SandboxView:
        secret_dirs = [Path(os.path.realpath(p)) for p in secrets]
        visible: list[Path] = []
        for path in shared:
            real = Path(os.path.realpath(path))
            if not real.exists() or any(_within(real, s) or _within(s, real) for s in secret_dirs):
                continue  # never re-expose a secret, nor a parent of one
            if real not in visible:
                visible.append(real)
        hidden = [s for s in secret_dirs if s.exists()]
        if job_has_own_uid:  # closed ancestors of shared paths: hide them, bind the shared path back
            for path in visible:
                closed = _closed_ancestor(path)
                if closed is not None and closed not in hidden:
                    hidden.append(closed)
        hidden.sort(key=lambda p: len(p.parts))
        return cls(tuple(hidden), tuple(sorted(visible, key=lambda p: len(p.parts))))

    def args(self) -> list[str]:
        return list(self._args)

    @functools.cached_property
    def _args(self) -> tuple[str, ...]:  # the same for every job: built once
        out: list[str] = []
        for path in self.hidden:
            if not _within(path, Path("/tmp")):  # the job's /tmp is its own already
                out += ["--tmpfs", str(path)]
        made: set[Path] = set()
        for path in self.visible:
            for parent in reversed(path.parents):  # bwrap would make them 0700: the job could not enter
                private = [*self.hidden, Path("/tmp")]  # /tmp: the job's own, bound from its scratch
                covered = any(_within(parent, h) and parent != h for h in private)
                if covered and parent not in made:
                    out += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            out += ["--ro-bind", str(path), str(path)]
        return tuple(out)


def bwrap_argv(
    bwrap: str,
    request: MainRequest,
    *,
    view: SandboxView = SandboxView(),
    user: JobUser | None = None,
    setpriv: str = "",
    seccomp_fd: int | None = None,
    unshare_net: bool | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    args = [bwrap, *root_layout()]
    args += ["--bind", str(request.tmp_dir), "/tmp", "--bind", str(request.io_dir), "/io"]
    args += view.args()
    args += [*extra, "--chdir", "/io"]
    # A private pid namespace: when the job's first process ends, everything it started ends too.
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "job"]
    args += ["--die-with-parent", "--new-session"]
    if unshare_net if unshare_net is not None else request.network == "none":
        args.append("--unshare-net")
    for device in request.devices:  # the sandbox's /dev is private: bind in only the job's GPUs
        args += ["--dev-bind", device, device]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if Path("/run").is_dir() and not Path("/run").is_symlink():
        args += ["--remount-ro", "/run"]  # after every bind that may make a mount point in it
    command = without_rc_files(request.command)
    if user is None:  # not root: bwrap's own user namespace; the job is the worker's user, no caps
        return [*args, "--unshare-user", "--cap-drop", "ALL", "--", *command]
    args += ["--cap-drop", "ALL"]
    for cap in _SETPRIV_CAPS:
        args += ["--cap-add", cap]
    become = [
        setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--no-new-privs",
        "--inh-caps=-all", "--bounding-set=-all", "--",
    ]
    return [*args, "--", *become, *command]


def wrapped_argv(sandbox: list[str], procs_files: list[Path]) -> list[str]:
    if not procs_files:
        return sandbox
    return ["/bin/sh", "-c", ENTER_CGROUPS, "sh", str(len(procs_files)), *map(str, procs_files), *sandbox]
