"""bubblewrap command lines: the host's filesystem read-only, the job's io dir at /io, its own /tmp."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from corral.runtimes.base import MainRequest, RuntimeUnavailable, without_rc_files

# Mounted fresh or per job, never bound from the host.
_OWN_MOUNTS = frozenset({"proc", "dev", "tmp", "io", "sys"})

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
            elif entry.is_dir() or entry.is_file():
                args += ["--ro-bind", entry.path, entry.path]
    args += ["--ro-bind", "/sys", "/sys", "--proc", "/proc", "--dev", "/dev"]
    return tuple(args)


def bwrap_argv(bwrap: str, request: MainRequest) -> list[str]:
    args = [bwrap, *root_layout()]
    args += ["--bind", str(request.tmp_dir), "/tmp", "--bind", str(request.io_dir), "/io", "--chdir", "/io"]
    # A private pid namespace: when the job's first process ends, everything it started ends too.
    args += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]
    if request.network == "none":
        args.append("--unshare-net")
    for device in request.devices:  # the sandbox's /dev is private: bind in only the job's GPUs
        args += ["--dev-bind", device, device]
    return [*args, "--", *without_rc_files(request.command)]


def wrapped_argv(bwrap: str, request: MainRequest, procs_files: list[Path]) -> list[str]:
    sandbox = bwrap_argv(bwrap, request)
    if not procs_files:
        return sandbox
    return ["/bin/sh", "-c", ENTER_CGROUPS, "sh", str(len(procs_files)), *map(str, procs_files), *sandbox]
