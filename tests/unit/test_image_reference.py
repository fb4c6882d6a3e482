"""Image references: normalisation as registries spell them, clear errors, the rewrite table."""

from __future__ import annotations

import pytest

from corral.errors import InvalidInput
from corral.images.reference import parse_reference, rewrite

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        ("ubuntu:24.04", "docker.io/library/ubuntu:24.04"),
        ("hail/batch-worker:0.2", "docker.io/hail/batch-worker:0.2"),
        ("index.docker.io/library/python:3.11", "docker.io/library/python:3.11"),
        ("127.0.0.1:5000/corral/test:1", "127.0.0.1:5000/corral/test:1"),
        ("localhost/tool", "localhost/tool:latest"),
        ("ghcr.io/org/a/b/c:v1.2-rc_3", "ghcr.io/org/a/b/c:v1.2-rc_3"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        (f"quay.io/x/y:1@{DIGEST}", f"quay.io/x/y:1@{DIGEST}"),
    ],
)
def test_references_are_normalised(given: str, normalised: str) -> None:
    assert str(parse_reference(given)) == normalised


@pytest.mark.parametrize(
    "bad",
    ["", " ubuntu", "Ubuntu", "ubuntu:", "ubuntu@sha256:123", "a//b", "ubuntu:bad tag", "-x/y", "x" * 300],
)
def test_bad_references_name_the_field_and_show_examples(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_reference(bad, field="bunch[3].process.image")
    assert info.value.field == "bunch[3].process.image"
    assert info.value.message.startswith("bunch[3].process.image: ") and "ubuntu:24.04" in info.value.message


def test_rewrite_uses_the_longest_matching_prefix() -> None:
    table = {
        "docker.io/library/": "127.0.0.1:5000/mirror/",
        "docker.io/library/python:": "127.0.0.1:5000/pinned/python:",
    }
    assert str(rewrite(parse_reference("ubuntu:24.04"), table)) == "127.0.0.1:5000/mirror/ubuntu:24.04"
    assert str(rewrite(parse_reference("python:3.11"), table)) == "127.0.0.1:5000/pinned/python:3.11"
    assert str(rewrite(parse_reference("ghcr.io/a/b:1"), table)) == "ghcr.io/a/b:1"
