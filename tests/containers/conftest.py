"""Real containers: a private docker-registry (scripts/registry.sh), a small image built offline
(scripts/test-image.sh: busybox-static plus bash), pushed with skopeo; crun/runc run it. Needs root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("skopeo", "umoci", "docker-registry", "busybox", "mkfs.ext4")
MARKER = "corral-test-image"


def require_container_tools() -> None:
    """In CI a missing tool fails the tests (scripts/setup.sh --test installs them); elsewhere it skips."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not (shutil.which("crun") or shutil.which("runc")):
        missing.append("crun or runc")
    problem = f"missing {', '.join(missing)}" if missing else ("needs root" if os.geteuid() != 0 else "")
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"container tests: {problem} (run scripts/setup.sh --test)")
        pytest.skip(f"container tests: {problem}")


def sleepers(seconds: str) -> list[int]:
    """Pids of `sleep SECONDS` processes on this machine: a cancelled job's must be gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class Registry:
    addr: str  # 127.0.0.1:port
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def images_setting(self, **extra: object) -> str:
        """CORRAL_IMAGES for a worker: this registry is plain HTTP."""
        return json.dumps({"registries": {self.addr: {"insecure": True}}, **extra})

    def blob_fetches(self, repository: str) -> int:
        """How many times blobs of `repository` were downloaded (from the registry's access log)."""
        needle = f'http.request.uri="/v2/{repository}/blobs/sha256:'
        lines = self.log.read_text(errors="replace").splitlines()
        return sum(1 for line in lines if "http.request.method=GET" in line and needle in line)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_container_tools()
    directory = tmp_path_factory.mktemp("registry")
    script = ROOT / "scripts" / "registry.sh"
    out = subprocess.run([str(script), "start", str(directory)], check=True, capture_output=True, text=True)
    yield Registry(out.stdout.strip().splitlines()[-1], directory)
    subprocess.run([str(script), "stop", str(directory)], check=False)


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_container_tools()
    layout = tmp_path_factory.mktemp("image") / "layout"
    subprocess.run([str(ROOT / "scripts" / "test-image.sh"), str(layout)], check=True, capture_output=True)
    return layout


def push(layout: Path, registry: Registry, repository: str, tag: str = "1") -> str:
    ref = f"{registry.addr}/{repository}:{tag}"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:test", f"docker://{ref}"],
        check=True,
    )
    return ref


@pytest.fixture(scope="session")
def test_image(image_layout: Path, registry: Registry) -> str:
    """The reference of the test image in the registry."""
    return push(image_layout, registry, "corral/test")


@pytest.fixture(scope="session")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, str]]:
    """A registry that wants a user name and password: (registry, user, password)."""
    require_container_tools()
    directory = tmp_path_factory.mktemp("private-registry")
    script = ROOT / "scripts" / "registry.sh"
    user, password = "robot", "s3cret-" + os.urandom(4).hex()
    out = subprocess.run(
        [str(script), "start", str(directory), user, password], check=True, capture_output=True, text=True
    )
    yield Registry(out.stdout.strip().splitlines()[-1], directory), user, password
    subprocess.run([str(script), "stop", str(directory)], check=False)
