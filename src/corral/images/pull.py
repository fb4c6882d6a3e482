"""Pull one image with skopeo into an OCI layout (digests verified), unpack it with umoci."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.errors import CorralError
from corral.images.config import ImagesConfig
from corral.images.reference import ImageReference

log = logging.getLogger(__name__)

_NOT_FOUND = ("manifest unknown", "name unknown", "not found", "no such image", "repository name not known")
_UNREACHABLE = (
    "connection refused", "no such host", "i/o timeout", "timeout", "network is unreachable",
    "connection reset", "tls handshake", "eof", "server misbehaving", "503", "502", "504",
)


class ImageError(CorralError):
    """The image cannot be had; the message is what the user sees on the job."""


class ImageNotFound(ImageError):
    pass


class RegistryUnreachable(ImageError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    """What a container needs from the image's config (read from umoci's generated runtime config)."""

    digest: str
    env: list[str]
    cwd: str
    uid: int
    gid: int
    size_bytes: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> ImageInfo:
        return cls(**json.loads(text))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(f"{name} is not installed on this worker (Debian/Ubuntu: apt-get install {name})")
    return path


def authfile(config: ImagesConfig, host: str, directory: Path) -> Path | None:
    """A containers-auth.json with this registry's credentials (0600), or None without credentials."""
    reg = config.registry(host)
    if not reg.username:
        return None
    secret = reg.password.get_secret_value() if reg.password else ""
    token = base64.b64encode(f"{reg.username}:{secret}".encode()).decode()
    path = directory / "auth.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {host: {"auth": token}}}, f)
    return path


def classify(ref: ImageReference, stderr: str) -> ImageError:
    text = stderr.lower()
    reason = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    if any(s in text for s in _NOT_FOUND) and "connection" not in text:
        return ImageNotFound(f"image not found: {ref} ({reason})")
    if "unauthorized" in text or "denied" in text or "authentication required" in text:
        return ImageError(f"image {ref}: the registry refused access; check [images.registries] credentials "
                          f"({reason})")
    if any(s in text for s in _UNREACHABLE):
        return RegistryUnreachable(f"registry {ref.registry} unreachable while pulling {ref}: {reason}")
    return ImageError(f"could not pull image {ref}: {reason}")


async def _run(argv: list[str], timeout: float) -> tuple[int, bytes, str]:
    """(exit code, stdout, stderr-or-stdout text); a timeout is exit code -1."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            return -1, b"", f"timeout: no answer in {timeout:g}s"
        raise
    return proc.returncode or 0, out, (err or out).decode(errors="replace")


async def _skopeo(ref: ImageReference, config: ImagesConfig, argv: list[str], *, attempts: int) -> bytes:
    """Run skopeo, retrying while the registry is unreachable; other failures raise at once."""
    delay = config.pull_retry_delay
    for attempt in range(1, attempts + 1):
        code, out, text = await _run(argv, config.pull_timeout)
        if code == 0:
            return out
        error = classify(ref, text)
        if not isinstance(error, RegistryUnreachable):
            raise error
        if attempt == attempts:
            raise RegistryUnreachable(f"{error.message} (tried {attempt} times)")
        log.warning("registry for %s: %s; retrying in %.1fs", ref, error.message, delay)
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _source_flags(ref: ImageReference, config: ImagesConfig, scratch: Path, prefix: str) -> list[str]:
    flags = [f"--{prefix}tls-verify=false"] if config.registry(ref.registry).insecure else []
    auth = authfile(config, ref.registry, scratch)
    return flags + ([f"--{prefix}authfile", str(auth)] if auth is not None else [])


async def copy_to_layout(ref: ImageReference, layout: Path, config: ImagesConfig) -> str:
    """skopeo copy into an OCI layout, retrying an unreachable registry; returns the manifest digest."""
    digest_file = layout.parent / "digest"
    argv = [tool("skopeo"), "copy", "--quiet", "--digestfile", str(digest_file),
            *_source_flags(ref, config, layout.parent, "src-"),
            f"docker://{ref.pullable}", f"oci:{layout}:image"]
    await _skopeo(ref, config, argv, attempts=config.pull_attempts)
    digest = digest_file.read_text().strip()
    if ref.digest and digest != ref.digest:  # skopeo checks blobs; the pinned manifest is ours to check
        raise ImageError(f"image {ref}: the registry served manifest {digest}, not the pinned {ref.digest}")
    return digest


async def remote_digest(
    ref: ImageReference, config: ImagesConfig, scratch: Path, *, attempts: int = 1
) -> str:
    """What the registry's tag points at now: the digest of the manifest (or index) it serves."""
    argv = [tool("skopeo"), "inspect", "--raw", "--retry-times", "0",
            *_source_flags(ref, config, scratch, ""), f"docker://{ref.pullable}"]
    raw = await _skopeo(ref, config, argv, attempts=attempts)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


async def unpack(layout: Path, bundle: Path, digest: str) -> ImageInfo:
    """umoci unpack (it verifies every blob's digest) -> bundle/rootfs and the image's env/cwd/user."""
    umoci = tool("umoci")
    code, _, err = await _run([umoci, "unpack", "--image", f"{layout}:image", str(bundle)], 3600)
    if code != 0:
        raise ImageError(f"could not unpack image ({digest}): {err.strip()}")
    runtime_config = json.loads((bundle / "config.json").read_text())
    process = runtime_config.get("process") or {}
    user = process.get("user") or {}
    size = await asyncio.to_thread(tree_size, bundle / "rootfs")
    return ImageInfo(
        digest=digest, env=list(process.get("env") or []), cwd=str(process.get("cwd") or "/"),
        uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)), size_bytes=size,
    )


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
