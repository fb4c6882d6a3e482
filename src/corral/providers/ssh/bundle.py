"""The worker bundle shipped to SSH hosts: wheels of corral and its dependencies, built once per source.

Hosts install it offline (`pip install --no-index --find-links`), into a virtual environment named after
the bundle's digest, so a host that already has this version reuses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import secrets
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import corral
from corral.errors import CorralError


class BundleError(CorralError):
    pass


@dataclass(frozen=True)
class WorkerBundle:
    digest: str  # names the venv on hosts: same digest, same venv
    tar: bytes  # the wheels, as a tar read by the host's install script

    @property
    def size(self) -> int:
        return len(self.tar)


def source_root() -> Path | None:
    """The project checkout corral runs from (an editable install), if any."""
    here = Path(corral.__file__).resolve().parent
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "corral").is_dir():
            return parent
    return None


def source_digest(root: Path) -> str:
    h = hashlib.sha256((root / "pyproject.toml").read_bytes())
    for path in sorted((root / "src" / "corral").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corral" / "wheelhouse"


_building: dict[tuple[int, str], asyncio.Lock] = {}  # one build per (event loop, digest) at a time


async def build_wheelhouse(root: Path, digest: str) -> Path:
    """`pip wheel` of the project with its dependencies, cached by source digest. Several collections
    (or processes) may ask at once: one build per process, and a private temporary dir per build."""
    target = cache_dir() / digest
    async with _building.setdefault((id(asyncio.get_running_loop()), digest), asyncio.Lock()):
        if (target / ".complete").is_file():
            return target
        tmp = target.with_name(f"{digest}.tmp{os.getpid()}-{secrets.token_hex(4)}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(tmp), str(root),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BundleError(f"building the worker wheels failed: {out.decode(errors='replace')[-2000:]}")
        (tmp / ".complete").touch()
        if (target / ".complete").is_file():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / ".complete").is_file():
                raise
        return target


def tar_wheels(wheelhouse: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for wheel in sorted(wheelhouse.glob("*.whl")):
            tar.add(wheel, arcname=wheel.name)
    return buf.getvalue()


def wheelhouse_digest(wheelhouse: Path) -> str:
    h = hashlib.sha256()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        h.update(wheel.name.encode())
        h.update(hashlib.sha256(wheel.read_bytes()).digest())
    return h.hexdigest()[:16]


async def worker_bundle(wheelhouse: str | None) -> WorkerBundle:
    """The bundle from a given wheelhouse, or one built from this checkout."""
    if wheelhouse is not None:
        path = Path(wheelhouse).expanduser()
        if not any(path.glob("corral-*.whl")):
            raise BundleError(
                f"worker_wheelhouse {path}: no corral-*.whl in it; build it with `pip wheel -w {path} .`"
            )
        digest = await asyncio.to_thread(wheelhouse_digest, path)
    else:
        root = source_root()
        if root is None:
            raise BundleError(
                "corral is not installed from a source checkout: set provider_options.worker_wheelhouse to a "
                "directory made with `pip wheel -w DIR corral`"
            )
        digest = f"{corral.__version__}-{await asyncio.to_thread(source_digest, root)}"
        path = await build_wheelhouse(root, digest)
    return WorkerBundle(digest, await asyncio.to_thread(tar_wheels, path))
