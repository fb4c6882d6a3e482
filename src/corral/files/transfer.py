"""Blocking copies by URL through fsspec; callers run them in a thread (asyncio.to_thread)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from corral.errors import CorralError


class TransferError(CorralError):
    """A file could not be copied; the message names it, `reason` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise TransferError(url, f"cannot open this URL: {exc}") from exc
    return fs, str(path)


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_in(url: str, dest: Path) -> int:
    """Copy a file or directory at `url` to the local path `dest`; returns the bytes copied."""
    fs, src = _filesystem(url)
    try:
        if not fs.exists(src):
            raise TransferError(url, "no such file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        is_dir = fs.isdir(src)
        if isinstance(fs, LocalFileSystem):
            if is_dir:
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, dest)
        elif is_dir:
            fs.get(src.rstrip("/") + "/", str(dest), recursive=True)
        else:
            fs.get(src, str(dest))
    except TransferError:
        raise
    except (OSError, ValueError) as exc:
        raise TransferError(url, f"{_reason(exc)}") from exc
    return _tree_size(dest)


def copy_out(src: Path, url: str) -> int:
    """Copy the local file or directory `src` to `url`; returns the bytes copied."""
    if not src.exists():
        raise TransferError(str(src), "no such file")
    fs, dest = _filesystem(url)
    try:
        size = _tree_size(src)
        if isinstance(fs, LocalFileSystem):
            target = Path(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                tmp = target.with_name(f".{target.name}.corral-{os.getpid()}")
                shutil.copyfile(src, tmp)
                tmp.replace(target)  # readers never see a half-written output
        else:
            parent = dest.rstrip("/").rsplit("/", 1)[0]
            if parent and parent != dest:
                fs.makedirs(parent, exist_ok=True)
            fs.put(str(src), dest, recursive=src.is_dir())
    except (OSError, ValueError) as exc:
        raise TransferError(url, f"{_reason(exc)}") from exc
    return size


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
