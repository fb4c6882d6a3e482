"""Pure parts of the Hail compatibility layer: query language v2, the bucket mapping, job group
resolution, the private CA, the hailtop delete stand-in."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from tests.unit.test_api_query import BATCH, JOB

from corral.api.schemas import JobSpec
from corral.errors import InvalidInput
from corral.hail.buckets import BucketMap
from corral.hail.job_groups import JobGroupSpec, descendants, group_rows, resolve_job_groups
from corral.hail.query_v2 import batch_predicate_v2, job_predicate_v2
from corral.hail.stand_ins import replace_hailtop_delete
from corral.hail.tls import ensure_tls
from corral.store.job_groups import JobGroupRecord


def test_v2_job_statements_all_must_hold() -> None:
    ok = job_predicate_v2("state = failed\nchunk = 7\njob_id >= 3")
    assert ok is not None and ok(JOB)
    not_ok = job_predicate_v2("state = failed\njob_id > 3")
    assert not_ok is not None and not not_ok(JOB)


def test_v2_regex_negation_and_single_words() -> None:
    assert job_predicate_v2("chunk =~ ^[0-9]$")(JOB)  # type: ignore[misc]
    assert not job_predicate_v2("chunk !~ 7")(JOB)  # type: ignore[misc]
    assert job_predicate_v2("chu")(JOB)  # type: ignore[misc]  # a word matches attribute keys and values
    assert job_predicate_v2("state != success")(JOB)  # type: ignore[misc]
    assert job_predicate_v2("  \n# a comment\n")(JOB)  # type: ignore[misc]  # comments only: no condition
    assert job_predicate_v2("  ") is None


def test_v2_duration_reads_the_steps_timings() -> None:
    timed = replace(JOB, status={"container_statuses": {"main": {"timing": {"duration_ms": 2500}}}})
    assert job_predicate_v2("duration > 2")(timed)  # type: ignore[misc]
    assert not job_predicate_v2("duration > 2")(JOB)  # type: ignore[misc]  # never ran: no duration


@pytest.mark.parametrize("query", ["state ~~ failed", "state > failed", "job_id = three", "cost =~ 1",
                                   "two words", "state = sleepy", "chunk = "])
def test_v2_bad_queries_are_400s_naming_q(query: str) -> None:
    with pytest.raises(InvalidInput) as err:
        job_predicate_v2(query)
    assert err.value.field == "q"


def test_v2_batch_statements() -> None:
    assert batch_predicate_v2(f"batch_id = {BATCH.id}\nuser = {BATCH.user}")(BATCH)  # type: ignore[misc]
    assert batch_predicate_v2("state = running")(BATCH)  # type: ignore[misc]
    assert not batch_predicate_v2("state = success\nkind = sweep")(BATCH)  # type: ignore[misc]


def test_local_bucket_maps_under_the_home_and_configured_buckets_by_name(tmp_path: Path) -> None:
    buckets = BucketMap(tmp_path, {"lab": "s3://lab-data/prefix", "scratch": "file:///scratch"})
    assert buckets.resolve("gs://corral-local/a/b.txt", field="f") == (
        (tmp_path / "buckets" / "corral-local").as_uri() + "/a/b.txt"
    )
    assert buckets.resolve("gs://lab/x", field="f") == "s3://lab-data/prefix/x"
    assert buckets.resolve("s3://scratch/y", field="f") == "file:///scratch/y"
    assert buckets.resolve("/io/local", field="f") == "/io/local"
    with pytest.raises(InvalidInput) as err:
        buckets.resolve("gs://elsewhere/z", field="bunch[0].input_files[0].from")
    assert err.value.field == "bunch[0].input_files[0].from" and "[buckets]" in str(err.value)


def test_bucket_config_refuses_what_is_not_storage() -> None:
    from pydantic import TypeAdapter, ValidationError

    from corral.hail.buckets import BucketsConfig

    adapter = TypeAdapter(BucketsConfig)
    assert adapter.validate_python({"a": "/data/a"}) == {"a": "file:///data/a"}
    with pytest.raises(ValidationError):
        adapter.validate_python({"a": "ftp://host/x"})


def _group(gid: int, parent: int, *, cancelled: bool = False) -> JobGroupRecord:
    return JobGroupRecord(1, gid, 1, parent, {}, None, cancelled, 0.0)


def test_descendants_walks_nested_groups() -> None:
    groups = [_group(1, 0), _group(2, 1), _group(3, 2), _group(4, 0)]
    assert descendants(groups, 1) == {1, 2, 3}
    assert descendants(groups, 0) == {0, 1, 2, 3, 4}


def test_group_rows_resolve_in_update_and_absolute_parents() -> None:
    existing = {1: _group(1, 0)}
    specs = [JobGroupSpec(job_group_id=1, absolute_parent_id=1),
             JobGroupSpec(job_group_id=2, in_update_parent_id=1)]
    rows = group_rows(specs, batch_id=1, update_id=2, start=2, n_groups=2, existing=existing, now=0.0,
                      field="job_groups")
    assert [(r["job_group_id"], r["parent_id"]) for r in rows] == [(2, 1), (3, 2)]
    with pytest.raises(InvalidInput, match="outside"):
        group_rows([JobGroupSpec(job_group_id=3)], batch_id=1, update_id=2, start=2, n_groups=2,
                   existing=existing, now=0.0, field="job_groups")
    with pytest.raises(InvalidInput, match="before it"):
        group_rows([JobGroupSpec(job_group_id=1, in_update_parent_id=1)], batch_id=1, update_id=2, start=2,
                   n_groups=1, existing=existing, now=0.0, field="job_groups")
    with pytest.raises(InvalidInput, match="no job group 9"):
        group_rows([JobGroupSpec(job_group_id=1, absolute_parent_id=9)], batch_id=1, update_id=2, start=2,
                   n_groups=1, existing=existing, now=0.0, field="job_groups")


def _job(**group: int) -> JobSpec:
    return JobSpec.model_validate({"job_id": 1, "process": {"command": ["true"]}, **group})


def test_jobs_get_absolute_group_ids_and_cancelled_groups_refuse_jobs() -> None:
    existing = {1: _group(1, 0), 2: _group(2, 1, cancelled=True)}
    jobs = [_job(in_update_job_group_id=2), _job(absolute_job_group_id=1), _job(in_update_job_group_id=0)]
    resolve_job_groups(jobs, start=3, n_groups=2, existing=existing, field="bunch")
    assert [j.absolute_job_group_id for j in jobs] == [4, 1, 0]
    with pytest.raises(InvalidInput, match="cancelled"):
        resolve_job_groups([_job(absolute_job_group_id=2)], start=None, n_groups=0, existing=existing,
                           field="bunch")
    with pytest.raises(InvalidInput) as err:
        resolve_job_groups([_job(in_update_job_group_id=5)], start=3, n_groups=2, existing=existing,
                           field="bunch")
    assert err.value.field == "bunch[0].in_update_job_group_id"


def test_private_ca_signs_a_loopback_certificate_and_is_reused(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    cert = x509.load_pem_x509_certificate(first.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "batch.localhost"} <= set(names.get_values_for_type(x509.DNSName))
    context = ssl.create_default_context(cafile=str(first.ca_cert))
    assert context.get_ca_certs()  # ca.pem is a usable trust anchor
    first.server_context()  # the key matches the certificate
    ca_before = first.ca_cert.read_bytes()
    assert ensure_tls(tmp_path).ca_cert.read_bytes() == ca_before
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0


def test_hailtop_delete_job_is_replaced_by_a_message() -> None:
    job = JobSpec.model_validate({"job_id": 1, "process": {
        "image": "hailgenetics/hailtop:0.2.139",
        "command": ["python3", "-m", "hailtop.aiotools.delete", "gs://corral-local/tmp/abc"]}})
    assert replace_hailtop_delete(job)
    assert job.process.command[:2] == ["/bin/sh", "-c"] and "kept scratch" in job.process.command[2]
    other = _job()
    assert not replace_hailtop_delete(other) and other.process.command == ["true"]
