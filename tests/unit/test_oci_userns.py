"""The container's id mapping (pure): the image's user is the job's uid, the rest a disjoint range."""

from __future__ import annotations

import pytest

from corral.runtimes.config import JobsConfig
from corral.runtimes.identity import JOB_UID_BASE, JobUsers
from corral.runtimes.oci.userns import CONTAINER_IDS, ID_RANGE_BASE, IdMapError, id_mapping


def _covered(spans: tuple[tuple[int, int, int], ...]) -> list[int]:
    return sorted(i for inside, _host, size in spans for i in range(inside, inside + size))


@pytest.mark.parametrize(("image_uid", "image_gid"), [(0, 0), (1000, 100), (65534, 65534), (65535, 0)])
def test_the_images_user_is_the_jobs_uid_and_every_id_is_mapped_once(image_uid: int, image_gid: int) -> None:
    users = JobUsers("worker-a", privileged=True)
    user = users.acquire("1.1.1")
    assert user is not None
    ids = id_mapping(user, image_uid, image_gid)
    assert ids.host_uid(image_uid) == user.uid
    assert _covered(ids.uids) == list(range(CONTAINER_IDS)) == _covered(ids.gids)
    hosts = [h + k for _i, h, n in ids.uids for k in range(n)]
    assert len(set(hosts)) == CONTAINER_IDS  # no two inside ids share a host id
    others = [h for h in hosts if h != user.uid]
    assert all(ID_RANGE_BASE <= h < JOB_UID_BASE for h in others)  # never a job uid, never an account
    oci = ids.oci()
    assert {"containerID": image_uid, "hostID": user.uid, "size": 1} in oci["uidMappings"]
    assert {"containerID": image_gid, "hostID": user.gid, "size": 1} in oci["gidMappings"]


def test_two_running_attempts_of_a_worker_get_disjoint_ranges() -> None:
    users = JobUsers("worker-b", privileged=True)
    a, b = users.acquire("1.1.1"), users.acquire("1.2.1")
    assert a is not None and b is not None
    first = {h + k for _i, h, n in id_mapping(a, 0, 0).uids for k in range(n)}
    second = {h + k for _i, h, n in id_mapping(b, 0, 0).uids for k in range(n)}
    assert not first & second


def test_an_image_user_outside_the_containers_ids_is_refused() -> None:
    user = JobUsers("worker-c", privileged=True).acquire("1.1.1")
    assert user is not None
    with pytest.raises(IdMapError, match="outside the container's ids"):
        id_mapping(user, 70000, 0)


def test_default_storage_takes_sizes_and_zero_turns_it_off() -> None:
    assert JobsConfig().default_storage == 10 * 1024**3
    assert JobsConfig(default_storage="64Mi").default_storage == 64 * 1024**2
    assert JobsConfig(default_storage=0).default_storage == 0
    with pytest.raises(ValueError, match="default_storage"):
        JobsConfig(default_storage="plenty")
