"""The seccomp filter every sandboxed job runs under: the syscalls Docker's default profile denies.

Built once per worker with libseccomp (through `pyseccomp`, a ctypes binding pinned in pyproject) and
kept as a compiled BPF program in the work dir; bubblewrap loads it (`--seccomp FD`) just before it
execs the job, after its own mounts. Denied calls fail with EPERM, as in Docker, so programs that probe
(e.g. for `personality` or `perf_event_open`) carry on instead of being killed.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Docker's default profile allows none of these to a container without CAP_SYS_ADMIN & co.
DENIED_SYSCALLS = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy",
    "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "personality", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key",
    "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "syslog", "_sysctl", "sysfs",
    "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
)
# clone with any namespace flag (a new user namespace would give the job capabilities back in it):
# NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET — one rule per bit.
CLONE_NAMESPACE_BITS = (0x80, 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)


def build_filter(path: Path) -> Path:
    """Write the compiled BPF program to `path` (once per worker); returns it."""
    import pyseccomp  # type: ignore[import-untyped]

    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    deny = pyseccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):  # not a syscall on this architecture
            continue
    for bit in CLONE_NAMESPACE_BITS:
        flt.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, bit, bit))
    # clone3 passes its flags in memory a filter cannot read: make it ENOSYS, libc falls back to clone.
    flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    # TIOCSTI would let a job push keystrokes into a terminal it inherited.
    flt.add_rule(deny, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, 0x5412))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    with open(tmp, "wb") as f:
        flt.export_bpf(f)
    tmp.replace(path)
    return path


def open_filter(path: Path) -> int:
    """A fresh read fd on the program for one job (bwrap reads it to the end)."""
    return os.open(path, os.O_RDONLY)
