"""Where a sweep keeps its files, by URL (fsspec): chunk inputs, results, version manifests, merged parts.

<root>/<name>/
  chunks/<key>.input.parquet      the chunk's parameter rows (+ _row), copied into the job's /io
  chunks/<key>.result.<ext>       what the job wrote to {result}, copied out by the worker
                                  (per-row commands: the folder chunks/<key>.result/ of <row>.<ext>)
  versions/<digest>.json          one version of the sweep: its chunk keys in order, command, image, ...
  versions/<digest>.params.parquet  its parameter table, one row group per chunk
  current.json                    the newest version's digest (so `corral sweep status NAME` finds it)
  merged/<digest>/part-*.parquet  the merged dataset of a version; each part lists its chunks in its
                                  footer, so the files alone say what is merged (no other state)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec  # type: ignore[import-untyped]
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from corral.errors import InvalidInput

LOCAL_BUCKET = "corral-local"


def local_bucket_url(home: Path) -> str:
    """The server's own `corral-local` bucket (HOME/buckets/corral-local) as a file:// URL."""
    return (home.resolve() / "buckets" / LOCAL_BUCKET).as_uri()


def normalise_url(location: str, home: Path | None = None) -> str:
    """A local path becomes file://; gs://corral-local/... is the server's own bucket under `home`."""
    text = str(location).strip()
    if not text:
        raise InvalidInput("storage: give a path or URL", field="storage")
    if text.startswith(f"gs://{LOCAL_BUCKET}"):
        if home is None:
            raise InvalidInput(f"storage: gs://{LOCAL_BUCKET} needs the server's home", field="storage")
        rest = text[len(f"gs://{LOCAL_BUCKET}") :].lstrip("/")
        return local_bucket_url(home) + (f"/{rest}" if rest else "")
    if "://" in text:
        return text.rstrip("/")
    return Path(os.path.expanduser(text)).resolve().as_uri()


def filesystem(url: str) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InvalidInput(f"storage: cannot open {url}: {exc}", field="storage") from exc
    return fs, str(path)


@contextlib.contextmanager
def open_url(location: str, mode: str = "rb") -> Iterator[IO[bytes]]:
    if "://" not in location:
        with open(location, mode) as f:
            yield f  # type: ignore[misc]
        return
    fs, path = filesystem(location)
    with fs.open(path, mode) as f:
        yield f


@contextlib.contextmanager
def exclusive(folder_url: str, name: str) -> Iterator[None]:
    """Hold a lock file in a folder (local disks; object stores have no lock: there, run one process)."""
    fs, path = filesystem(folder_url)
    if not isinstance(fs, LocalFileSystem):
        yield
        return
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return bytes(fs.cat_file(path))


def write_atomically(url: str, data: bytes) -> None:
    """Readers see the old file or the whole new one, never half (rename on local disks; object stores
    publish an upload whole)."""
    fs, path = filesystem(url)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        tmp = f"{parent}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def publish(tmp_url: str, final_url: str) -> None:
    """Move a finished temporary file into place."""
    fs, tmp = filesystem(tmp_url)
    _, final = filesystem(final_url)
    if isinstance(fs, LocalFileSystem):
        os.replace(tmp, final)
    else:
        fs.mv(tmp, final)


def remove(url: str) -> None:
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path)


def list_names(url: str) -> list[str]:
    """Base names in a directory URL ([] when it does not exist)."""
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)


def read_json(url: str) -> Any:
    return json.loads(read_bytes(url))


def write_json(url: str, value: Any) -> None:
    write_atomically(url, json.dumps(value, indent=1, sort_keys=True).encode())


@dataclass(frozen=True)
class SweepLayout:
    """URLs of one named sweep under a storage root."""

    root: str
    name: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.name}"

    @property
    def chunks(self) -> str:
        return f"{self.base}/chunks"

    def chunk_input(self, key: str) -> str:
        return f"{self.chunks}/{key}.input.parquet"

    def chunk_result(self, key: str, ext: str | None) -> str:
        """The result file (or, for per-row commands, ext None: the folder of per-row files)."""
        return f"{self.chunks}/{key}.result" + (f".{ext}" if ext else "")

    def version(self, digest: str) -> str:
        return f"{self.base}/versions/{digest}.json"

    def params(self, digest: str) -> str:
        return f"{self.base}/versions/{digest}.params.parquet"

    @property
    def current(self) -> str:
        return f"{self.base}/current.json"

    def merged(self, digest: str) -> str:
        return f"{self.base}/merged/{digest}"
