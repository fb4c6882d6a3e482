"""Image references as Docker and OCI registries spell them: parse, check and normalise (no I/O).

`ubuntu:24.04` -> `docker.io/library/ubuntu:24.04`; `host:5000/a/b@sha256:…` keeps its digest.
Grammar: github.com/distribution/reference (domain, path components, tag, digest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.errors import InvalidInput

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:localhost|\[[0-9a-fA-F:]+\]|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
MAX_LENGTH = 255


@dataclass(frozen=True)
class ImageReference:
    registry: str  # host[:port]
    repository: str  # path, e.g. library/ubuntu
    tag: str | None
    digest: str | None  # pinned content digest, verified on pull

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def pullable(self) -> str:
        """What registries are asked for: the digest alone when pinned (a tag beside it is only a label)."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _bad(ref: str, why: str, field: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {ref!r} is not an image reference ({why}); write e.g. 'ubuntu:24.04', "
        "'registry.example.com:5000/team/tool:1.2' or 'name@sha256:<64 hex digits>'",
        field=field,
    )


def parse_reference(ref: str, *, field: str = "image") -> ImageReference:
    """A normalised reference; InvalidInput naming `field` and what to change."""
    if not ref or len(ref) > MAX_LENGTH or ref != ref.strip():
        raise _bad(ref, f"empty, padded or longer than {MAX_LENGTH} characters", field)
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise _bad(ref, "the digest must be sha256:<64 lowercase hex> or sha512:<128 hex>", field)
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise _bad(ref, f"bad tag {tag!r}", field)
    parts = rest.split("/")
    registry = DEFAULT_REGISTRY
    # The first part is a registry if it looks like a host: has a dot or a port, or is localhost.
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
        if not _DOMAIN.fullmatch(registry):
            raise _bad(ref, f"bad registry host {registry!r}", field)
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise _bad(ref, "repository names are lowercase letters, digits and . _ - separated by /", field)
    if registry == DEFAULT_REGISTRY and len(parts) == 1:
        parts.insert(0, "library")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, "/".join(parts), tag, digest)


def rewrite(ref: ImageReference, table: dict[str, str]) -> ImageReference:
    """Apply the longest matching prefix of the rewrite/mirror table to the normalised reference."""
    text = str(ref)
    best = max((p for p in table if text.startswith(p)), key=len, default=None)
    if best is None:
        return ref
    return parse_reference(table[best] + text[len(best):], field=f"images.rewrite[{best!r}]")
