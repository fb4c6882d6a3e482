"""The image cache against a real registry: bounded size, least recently used first, never an image in use."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from tests.containers.conftest import Registry, push

from corral.images import ImageCache, ImageError, ImageNotFound, ImagesConfig


def _cache(tmp_path: Path, registry: Registry, max_bytes: int) -> ImageCache:
    config = ImagesConfig.model_validate(
        {"registries": {registry.addr: {"insecure": True}}, "cache_max_bytes": max_bytes}
    )
    cache = ImageCache(config, tmp_path / "cache")
    cache.prepare()
    return cache


async def test_eviction_removes_least_recently_used_images_not_in_use(
    tmp_path: Path, registry: Registry, image_layout: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b, c = (push(image_layout, registry, f"corral/lru-{name}-{tag}") for name in "abc")
    probe = _cache(tmp_path / "probe", registry, 1 << 40)
    lease = await probe.acquire(a)
    one_image = lease.info.size_bytes
    lease.release()
    cache = _cache(tmp_path, registry, int(one_image * 1.5))  # room for one image only

    held_a = await cache.acquire(a)
    held_b = await cache.acquire(b)  # over the bound, but a is in use and b is the newest: both stay
    assert held_a.rootfs.is_dir() and held_b.rootfs.is_dir()
    held_a.release()
    held_b.release()

    held_c = await cache.acquire(c)  # a then b (least recently used, unused) make room
    assert not held_a.rootfs.exists() and not held_b.rootfs.exists() and held_c.rootfs.is_dir()
    assert (held_c.rootfs / "etc" / "image-marker").exists()
    assert cache.pulls == 3

    again = await cache.acquire(a)  # pulled again; c is in use, so it stays
    assert cache.pulls == 4 and held_c.rootfs.is_dir() and again.rootfs.is_dir()
    again.release()
    held_c.release()


async def test_a_pinned_digest_is_verified(tmp_path: Path, registry: Registry, test_image: str) -> None:
    cache = _cache(tmp_path, registry, 1 << 40)
    lease = await cache.acquire(test_image)
    digest = lease.info.digest
    lease.release()
    assert digest.startswith("sha256:")
    pinned = await _cache(tmp_path / "p", registry, 1 << 40).acquire(f"{test_image}@{digest}")
    assert pinned.info.digest == digest
    pinned.release()
    wrong = "sha256:" + "0" * 64
    try:
        await _cache(tmp_path / "w", registry, 1 << 40).acquire(f"{test_image.rsplit(':', 1)[0]}@{wrong}")
    except ImageNotFound as exc:
        assert wrong in exc.message
    else:
        raise AssertionError("an unknown digest was accepted")


async def test_concurrent_acquires_share_one_pull(
    tmp_path: Path, registry: Registry, image_layout: Path
) -> None:
    repo = f"corral/many-{uuid.uuid4().hex[:6]}"
    ref = push(image_layout, registry, repo)
    cache = _cache(tmp_path, registry, 1 << 40)
    leases = await asyncio.gather(*(cache.acquire(ref) for _ in range(5)))
    assert cache.pulls == 1 and len({lease.rootfs for lease in leases}) == 1
    assert registry.blob_fetches(repo) == 2
    assert json.loads((leases[0].rootfs.parent / "image.json").read_text())["cwd"] == "/srv"
    for lease in leases:
        lease.release()


async def test_credentials_from_the_configuration_open_a_private_registry(
    tmp_path: Path, private_registry: tuple[Registry, str, str], image_layout: Path
) -> None:
    registry, user, password = private_registry
    ref = f"{registry.addr}/corral/private:1"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"{user}:{password}",
         f"oci:{image_layout}:test", f"docker://{ref}"],
        check=True,
    )
    anonymous = _cache(tmp_path / "anon", registry, 1 << 40)
    with pytest.raises(ImageError) as refused:
        await anonymous.acquire(ref)
    assert "refused access" in refused.value.message and password not in refused.value.message

    config = ImagesConfig.model_validate(
        {"registries": {registry.addr: {"insecure": True, "username": user, "password": password}}}
    )
    cache = ImageCache(config, tmp_path / "creds")
    cache.prepare()
    lease = await cache.acquire(ref)
    assert (lease.rootfs / "etc" / "image-marker").exists()
    lease.release()
    leftovers = [p for p in (tmp_path / "creds").rglob("auth.json")]
    assert not leftovers  # the credentials file went with the pull's temporary directory


async def test_a_starting_worker_leaves_another_workers_pull_alone(
    tmp_path: Path, registry: Registry, test_image: str
) -> None:
    import fcntl
    import os

    cache = _cache(tmp_path, registry, 1 << 40)
    key = cache.entry(cache.resolve(test_image)).name
    busy = tmp_path / "cache" / "tmp" / f"{key}-busy"
    busy.mkdir()
    crashed = tmp_path / "cache" / "tmp" / f"{'f' * 32}-crashed"
    crashed.mkdir()
    fd = os.open(tmp_path / "cache" / "locks" / f"{key}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is pulling this image
    try:
        _cache(tmp_path, registry, 1 << 40)  # a second worker starts on the same cache
        assert busy.is_dir() and not crashed.exists()
    finally:
        os.close(fd)


async def test_a_moved_tag_is_pulled_again_after_the_check_interval(
    tmp_path: Path, registry: Registry, image_layout: Path
) -> None:
    import shutil

    other = tmp_path / "other-layout"
    shutil.copytree(image_layout, other)
    subprocess.run(
        ["umoci", "config", "--image", f"{other}:test", "--config.env", "IMAGE_VAR=v2"], check=True
    )
    repo = f"corral/moving-{uuid.uuid4().hex[:6]}"
    ref = push(image_layout, registry, repo)

    def cache(interval: float, name: str) -> ImageCache:
        config = ImagesConfig.model_validate(
            {"registries": {registry.addr: {"insecure": True}}, "tag_check_interval": interval}
        )
        made = ImageCache(config, tmp_path / name)
        made.prepare()
        return made

    eager, lazy = cache(0, "eager"), cache(3600, "lazy")
    first = await eager.acquire(ref)
    assert (await lazy.acquire(ref)).info.digest == first.info.digest
    push(other, registry, repo)  # the tag moves while a job still uses the old image

    moved = await eager.acquire(ref)
    assert moved.info.digest != first.info.digest and "IMAGE_VAR=v2" in moved.info.env
    assert eager.pulls == 2
    retired = list((tmp_path / "eager" / "tmp").glob("*-retired-*"))
    assert len(retired) == 1 and (retired[0] / "rootfs" / "etc" / "image-marker").exists()  # still in use
    assert Path(first.lower).resolve() == retired[0] / "rootfs"  # a lease keeps its image through the move
    first.release()
    again = await eager.acquire(ref)  # same digest: checked, not pulled; the unused old image is gone
    assert again.info.digest == moved.info.digest and eager.pulls == 2
    assert not list((tmp_path / "eager" / "tmp").glob("*-retired-*"))
    assert (await lazy.acquire(ref)).info.digest == first.info.digest  # not checked within its interval
    assert lazy.pulls == 1
