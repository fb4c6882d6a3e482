"""GPU-aware placement, and job-private instances that take only the job they were made for."""

from __future__ import annotations

from corral.domain.placement import FreeCapacityIndex, InstanceCapacity
from corral.domain.resources import parse_resources
from corral.domain.scheduling import ReadyJob, ReadyQueues, plan_placements, plan_reserved_placements
from corral.errors import InvalidInput

GI = 1 << 30


def test_a_gpu_job_goes_only_where_enough_gpus_of_its_type_are_free() -> None:
    index = FreeCapacityIndex([
        InstanceCapacity("cpu", 2000, 4 * GI),
        InstanceCapacity("t4", 4000, 4 * GI, free_gpus=1, gpu_type="t4"),
        InstanceCapacity("a100", 8000, 4 * GI, free_gpus=2, gpu_type="a100"),
    ])
    assert index.best_fit(1000, GI, 1, "t4").name == "t4"  # type: ignore[union-attr]
    assert index.best_fit(1000, GI, 2).name == "a100"  # type: ignore[union-attr]
    assert index.best_fit(1000, GI, 1, "h100") is None
    assert index.best_fit(1000, GI).name == "cpu"  # type: ignore[union-attr]


def test_taking_gpus_leaves_the_rest_for_others() -> None:
    queues = ReadyQueues()
    for job_id in (1, 2, 3):
        queues.push(ReadyJob(1, job_id, "u", 500, GI, 0, gpus=1))
    placements = plan_placements(queues, [InstanceCapacity("g", 4000, 8 * GI, free_gpus=2)], {})
    assert [p.job.job_id for p in placements] == [1, 2]  # the third waits for a GPU, not for cores
    assert len(queues) == 1


def test_a_reserved_instance_takes_only_its_own_job() -> None:
    queues = ReadyQueues()
    queues.push(ReadyJob(1, 1, "u", 1000, GI, 0))
    queues.push(ReadyJob(1, 2, "u", 4000, GI, 0))
    reserved = {(1, 2): InstanceCapacity("private", 4000, 2 * GI)}
    placements = plan_reserved_placements(queues, reserved)
    assert [(p.job.job_id, p.instance) for p in placements] == [(2, "private")]
    assert [j.job_id for j in queues] == [1]
    assert plan_reserved_placements(queues, {(9, 9): InstanceCapacity("x", 4000, GI)}) == []


def test_gpu_requests_are_validated_naming_the_field() -> None:
    assert parse_resources("1", "1Gi", None, gpus=2, gpu_type=" t4 ").gpu_type == "t4"
    for gpus, gpu_type in ((-1, None), (1, "  ")):
        try:
            parse_resources("1", "1Gi", None, gpus=gpus, gpu_type=gpu_type, prefix="bunch[0].resources")
        except InvalidInput as exc:
            assert exc.field in ("bunch[0].resources.gpus", "bunch[0].resources.gpu_type")
        else:
            raise AssertionError("accepted a bad GPU request")
