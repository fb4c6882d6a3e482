"""Where a user's `file://` inputs and outputs may point: checked at submission, named in the 400.

A local URL (`file://…`, `local://…` or a bare path) must resolve (`..` and symlinks followed, on the
server's host) to a path under one of the user's allowed roots and not under CORRAL_HOME (the store,
tokens, TLS keys, every job's scratch). The accepted URL is stored resolved, so a link swapped in
later cannot redirect the copy; the worker copies it with the job's own uid.

Roots: `[files] allowed_roots` (`{user}` expands), plus `user_roots[user]` and
`billing_project_roots[project]`, plus the `file://` targets of `[buckets]`. With no `allowed_roots`
configured (the embedded default), the server's own user — the account the server runs as — may use
their home, the server's working directory and `$CORRAL_HOME/tmp` (where the DSL's LocalBackend stages
files between jobs), and their copies run with the worker's (their) rights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from corral.config import Settings
from corral.errors import InvalidInput

LOCAL_PROTOCOLS = frozenset({"file", "local"})


def local_path(url: str, *, field: str) -> str | None:
    """The host path a URL names, or None when it is not a local URL (s3://, gs://, …)."""
    if "::" in url:  # fsspec chaining (simplecache::file://…): refused when any link is local
        if any(local_path(part, field=field) is not None for part in url.split("::")):
            raise InvalidInput(
                f"{field}: chained URLs over local files are not accepted ({url!r})", field=field
            )
        return None
    protocol, sep, rest = url.partition("://")
    if not sep:
        return url  # a bare path: fsspec reads it as a local file
    if protocol.lower() not in LOCAL_PROTOCOLS:
        return None
    if protocol.lower() == "file" and rest and not rest.startswith("/"):
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise InvalidInput(f"{field}: file URLs name no other host ({url!r})", field=field)
        rest = "/" + path
    return rest


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


@dataclass(frozen=True)
class FileRoots:
    allowed: tuple[Path, ...]
    excluded: tuple[Path, ...]
    as_worker: bool = False  # the embedded default's own user: copies run with the worker's rights

    def check(self, url: str, *, field: str) -> str:
        """The URL to store (local ones resolved to file:///real/path), or 400 naming the field."""
        path = local_path(url, field=field)
        if path is None:
            return url
        if not path.startswith("/"):
            raise InvalidInput(
                f"{field}: {url!r} is a relative path; give an absolute file:// URL", field=field
            )
        real = Path(os.path.realpath(path))
        root = max((r for r in self.allowed if _within(real, r)), key=lambda r: len(r.parts), default=None)
        secret = max((e for e in self.excluded if _within(real, e)), key=lambda e: len(e.parts), default=None)
        # Refused: under no root, or inside CORRAL_HOME unless a root lies deeper in it (the local bucket).
        hidden = secret is not None and (root is None or not _within(root, secret) or root == secret)
        if root is None or hidden:
            where = ", ".join(str(r) for r in self.allowed) or "none for this user"
            raise InvalidInput(
                f"{field}: {url!r} is not under a directory you may use for file:// URLs (allowed: {where}); "
                "ask the site to add one to [files] allowed_roots, or use an object store URL",
                field=field,
            )
        return real.as_uri()


def _expand(roots: list[str], user: str) -> list[Path]:
    return [Path(os.path.realpath(os.path.expanduser(r.replace("{user}", user)))) for r in roots]


def file_roots(settings: Settings, user: str, billing_project: str) -> FileRoots:
    files = settings.files
    excluded = [settings.home, *([settings.hail_compat_dir] if settings.hail_compat_dir else [])]
    allowed: list[Path] = []
    as_worker = False
    if files.allowed_roots is None:
        if user == settings.default_user:
            # + the DSL's own staging dir for files between jobs (LocalBackend: file://$CORRAL_HOME/tmp).
            allowed += [Path.home(), files.working_dir or Path.cwd(), settings.home / "tmp"]
            as_worker = True
    else:
        allowed += _expand(files.allowed_roots, user)
    allowed += _expand(files.user_roots.get(user, []), user)
    allowed += _expand(files.billing_project_roots.get(billing_project, []), user)
    for target in settings.buckets.values():
        bucket = local_path(target, field="buckets")
        if bucket is not None:
            allowed.append(Path(os.path.realpath(bucket)))
    from corral.hail.buckets import local_bucket_root  # the Hail-compatible API's own local bucket

    allowed.append(Path(os.path.realpath(local_bucket_root(settings.home))))
    return FileRoots(
        tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in allowed)),
        tuple(Path(os.path.realpath(p)) for p in excluded),
        as_worker,
    )
