from __future__ import annotations

from collections import Counter

from corral.domain.fair_share import UserDemand, fair_share_cores
from corral.domain.placement import FreeCapacityIndex, InstanceCapacity, best_fit
from corral.domain.scheduling import ReadyJob, ReadyQueues, plan_placements


def test_equal_users_split_free_cores_evenly() -> None:
    shares = fair_share_cores({"a": UserDemand(0, 10_000), "b": UserDemand(0, 10_000)}, 8000)
    assert shares == {"a": 4000, "b": 4000}


def test_small_user_gets_all_it_wants_and_the_rest_goes_to_the_big_one() -> None:
    shares = fair_share_cores({"a": UserDemand(0, 1000), "b": UserDemand(0, 50_000)}, 8000)
    assert shares == {"a": 1000, "b": 7000}


def test_user_already_running_above_the_level_gets_nothing_new() -> None:
    shares = fair_share_cores({"a": UserDemand(6000, 10_000), "b": UserDemand(0, 10_000)}, 4000)
    # capacity 10 cores: level 5 each, but a already holds 6 (no pre-emption), so b gets all 4 free.
    assert shares == {"a": 0, "b": 4000}


def test_shares_never_exceed_free_cores() -> None:
    demands = {f"u{i}": UserDemand(i * 100, 3000 + i) for i in range(37)}
    shares = fair_share_cores(demands, 12_345)
    assert sum(shares.values()) <= 12_345
    assert all(v >= 0 for v in shares.values())


def test_best_fit_picks_the_tightest_instance() -> None:
    insts = [InstanceCapacity("big", 8000, 32 << 30), InstanceCapacity("small", 2000, 8 << 30)]
    chosen = best_fit(insts, 1000, 1 << 30)
    assert chosen is not None and chosen.name == "small"
    chosen = best_fit(insts, 1000, 16 << 30)  # memory rules out the small one
    assert chosen is not None and chosen.name == "big"
    assert best_fit(insts, 9000, 0) is None


def test_capacity_index_tracks_what_is_taken() -> None:
    index = FreeCapacityIndex([InstanceCapacity("a", 2000, 4 << 30)])
    inst = index.best_fit(1000, 1 << 30)
    assert inst is not None
    index.take(inst, 1000, 1 << 30)
    index.take(inst, 1000, 1 << 30)
    assert index.best_fit(1, 0) is None and len(index) == 0


def _queue(users: dict[str, int], cores: int = 1000) -> ReadyQueues:
    queues = ReadyQueues()
    for batch_id, (user, n) in enumerate(users.items(), start=1):
        for job_id in range(1, n + 1):
            queues.push(ReadyJob(batch_id, job_id, user, cores, 1 << 20, 0))
    return queues


def test_two_users_competing_for_one_pool_get_equal_shares() -> None:
    queues = _queue({"alice": 100, "bob": 100})
    instances = [InstanceCapacity(f"i{i}", 4000, 16 << 30) for i in range(4)]
    placements = plan_placements(queues, instances, {})
    per_user = Counter(p.job.user for p in placements)
    assert per_user == {"alice": 8, "bob": 8}
    assert len(queues) == 200 - 16


def test_fifo_order_is_kept_per_user() -> None:
    queues = _queue({"alice": 5})
    placements = plan_placements(queues, [InstanceCapacity("i", 3000, 1 << 30)], {})
    assert [p.job.job_id for p in placements] == [1, 2, 3]


def test_job_too_big_for_any_instance_waits_without_blocking_others() -> None:
    queues = ReadyQueues()
    queues.push(ReadyJob(1, 1, "alice", 64_000, 0, 0))
    queues.push(ReadyJob(2, 1, "bob", 1000, 0, 0))
    placements = plan_placements(queues, [InstanceCapacity("i", 4000, 1 << 30)], {})
    assert [(p.job.user, p.instance) for p in placements] == [("bob", "i")]
    assert (1, 1) in queues


def test_removing_a_cancelled_batch_updates_ready_cores() -> None:
    queues = _queue({"alice": 3, "bob": 2})
    removed = queues.remove_where(1)
    assert len(removed) == 3 and "alice" not in queues.ready_mcpu
    assert queues.ready_mcpu["bob"] == 2000


def test_pushing_many_at_once_is_pushing_them_one_by_one() -> None:
    jobs = [ReadyJob(1, j, "alice" if j % 3 else "bob", 250 * j, 1 << 20, 0) for j in range(1, 40)]
    jobs += [ReadyJob(1, 5, "alice", 9999, 1, 0), ReadyJob(2, 1, "carol", 1000, 1, 0)]  # a repeat; a new user
    one_by_one, at_once = ReadyQueues(), ReadyQueues()
    one_by_one.push(jobs[0])
    at_once.push(jobs[0])  # already queued before the bulk push
    added = [one_by_one.push(job) for job in jobs]
    assert at_once.push_all(jobs) == sum(added) == len(jobs) - 2
    assert at_once.ready_mcpu == one_by_one.ready_mcpu
    assert at_once.ready_mcpu["bob"] == sum(j.cores_mcpu for j in jobs[:39] if j.user == "bob")
    assert at_once.users() == one_by_one.users() == ["alice", "bob", "carol"]
    for user in at_once.users():  # same FIFO per user: pop both dry
        popped = [at_once.pop(user).key for _ in range(len([j for j in jobs[:39] if j.user == user]))]
        assert popped == [one_by_one.pop(user).key for _ in popped]
    assert len(at_once) == len(one_by_one) == 1  # carol's
