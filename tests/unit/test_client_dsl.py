"""The pipeline DSL: rendering resource files per job, implicit dependencies, file moves, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.api.schemas import JobSpec
from corral.client.dsl import Batch
from corral.errors import InvalidInput

TMP = "file:///shared/tmp"


def _specs(b: Batch, cwd: Path) -> list[JobSpec]:
    return b.compile(tmpdir=TMP, cwd=cwd)


def _script(spec: JobSpec) -> str:
    assert spec.process.command[:2] == ["/bin/bash", "-c"]
    return spec.process.command[2]


def _pairs(transfers: list[object]) -> list[tuple[str, str]]:
    return [(t.from_, t.to) for t in transfers]  # type: ignore[attr-defined]


def test_own_resource_renders_under_the_jobs_own_io_dir(tmp_path: Path) -> None:
    b = Batch()
    a = b.new_job("a")
    a.command(f"echo hi > {a.ofile}")
    (spec,) = _specs(b, tmp_path)
    assert _script(spec) == "set -e\nmkdir -p /io/j1\necho hi > /io/j1/ofile"
    assert spec.input_files == [] and spec.output_files == []


def test_using_another_jobs_resource_copies_it_and_adds_a_parent(tmp_path: Path) -> None:
    b = Batch()
    a = b.new_job("a")
    a.command(f"echo hi > {a.ofile}")
    c = b.new_job("c")
    c.command(f"cat {a.ofile} > {c['result.txt']}")
    producer, consumer = _specs(b, tmp_path)
    tmpdir = TMP
    assert _pairs(producer.output_files) == [("/io/j1/ofile", f"{tmpdir}/j1/ofile")]
    assert _pairs(consumer.input_files) == [(f"{tmpdir}/j1/ofile", "/io/j1/ofile")]
    assert consumer.in_update_parent_ids == [1]
    assert _script(consumer).endswith("cat /io/j1/ofile > /io/j2/result.txt")


def test_explicit_and_implicit_dependencies_are_merged_without_duplicates(tmp_path: Path) -> None:
    b = Batch()
    a, x = b.new_job("a"), b.new_job("x")
    a.command(f"echo > {a.out}")
    x.command("true")
    c = b.new_job("c").depends_on(a, x, a)
    c.command(f"cat {a.out}")
    assert _specs(b, tmp_path)[2].in_update_parent_ids == [1, 2]


def test_read_input_is_copied_into_each_job_that_uses_it(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x\n")
    b = Batch()
    data = b.read_input("data.txt")
    for name in ("one", "two"):
        b.new_job(name).command(f"wc -l {data}")
    for spec in _specs(b, tmp_path):
        assert _pairs(spec.input_files) == [(f"file://{tmp_path}/data.txt", "/io/inputs/1/data.txt")]
        assert _script(spec) == "set -e\nwc -l /io/inputs/1/data.txt"


def test_read_input_of_a_missing_file_says_which(tmp_path: Path) -> None:
    b = Batch()
    b.new_job().command(f"cat {b.read_input('nope.txt')}")
    with pytest.raises(InvalidInput, match=r"nope\.txt"):
        _specs(b, tmp_path)


def test_read_input_keeps_urls(tmp_path: Path) -> None:
    b = Batch()
    b.new_job().command(f"cat {b.read_input('s3://bucket/key.csv')}")
    (spec,) = _specs(b, tmp_path)
    assert _pairs(spec.input_files) == [("s3://bucket/key.csv", "/io/inputs/1/key.csv")]


def test_write_output_goes_from_the_producer_to_a_path_relative_to_cwd(tmp_path: Path) -> None:
    b = Batch()
    j = b.new_job("j")
    j.command(f"echo 1 > {j.ofile}")
    b.write_output(j.ofile, "out/count.txt")
    (spec,) = _specs(b, tmp_path)
    assert _pairs(spec.output_files) == [("/io/j1/ofile", f"file://{tmp_path}/out/count.txt")]


def test_write_output_of_a_file_the_job_never_writes_is_refused(tmp_path: Path) -> None:
    b = Batch()
    j = b.new_job("j").command("true")
    b.write_output(j.ofile, "x")
    with pytest.raises(InvalidInput, match="never mentions 'ofile'"):
        _specs(b, tmp_path)


def test_commands_concatenate_in_call_order(tmp_path: Path) -> None:
    b = Batch()
    b.new_job().command("echo one").command("echo two")
    (spec,) = _specs(b, tmp_path)
    assert _script(spec) == "set -e\necho one\necho two"


def test_settings_reach_the_spec(tmp_path: Path) -> None:
    b = Batch(default_image="ubuntu:24.04")
    (
        b.new_job("j", attributes={"k": 1})
        .command("true")
        .cpu(0.5)
        .memory("256Mi")
        .storage("1Gi")
        .timeout(60)
        .always_run()
        .env("A", "b")
        .n_max_attempts(3)
    )
    (spec,) = _specs(b, tmp_path)
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.storage) == ("0.5", "256Mi", "1Gi")
    assert spec.timeout == 60 and spec.always_run and spec.n_max_attempts == 3
    assert [(e.name, e.value) for e in spec.env] == [("A", "b")]
    assert spec.process.image == "ubuntu:24.04"
    assert spec.attributes == {"k": "1", "name": "j"} and spec.name == "j"


@pytest.mark.parametrize(
    ("setter", "value", "message"),
    [
        ("cpu", "lots", "job 'count': cpu: 'lots' is not a cpu count"),
        ("cpu", -1, "job 'count': cpu: -1 must be a positive"),
        ("memory", "big", "job 'count': memory: 'big' is not a size"),
        ("storage", "x", "job 'count': storage: 'x' is not a size"),
        ("timeout", 0, "job 'count': timeout: 0 must be a positive"),
        ("n_max_attempts", 0, "job 'count': n_max_attempts: 0"),
    ],
)
def test_bad_settings_name_the_job_and_the_value(setter: str, value: object, message: str) -> None:
    job = Batch().new_job("count")
    with pytest.raises(InvalidInput) as caught:
        getattr(job, setter)(value)
    assert message in caught.value.message


def test_attribute_and_item_give_the_same_resource_file() -> None:
    j = Batch().new_job()
    assert j.ofile is j["ofile"]
    assert f"{j.ofile}" == str(j.ofile)


def test_bad_resource_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a valid name"):
        Batch().new_job()["../escape"]


def test_a_cycle_is_reported_with_job_names(tmp_path: Path) -> None:
    b = Batch()
    a, c = b.new_job("a").command("true"), b.new_job("c").command("true")
    a.depends_on(c)
    c.depends_on(a)
    with pytest.raises(InvalidInput, match="cycle"):
        _specs(b, tmp_path)


def test_a_job_without_command_is_refused(tmp_path: Path) -> None:
    b = Batch()
    b.new_job("empty")
    with pytest.raises(InvalidInput, match="job 'empty': has no command"):
        _specs(b, tmp_path)


def test_resource_of_another_batch_is_refused(tmp_path: Path) -> None:
    other = Batch().new_job("o")
    b = Batch()
    b.new_job("j").command(f"cat {other.ofile}")
    with pytest.raises(InvalidInput, match="another Batch"):
        _specs(b, tmp_path)


def test_depends_on_a_job_of_another_batch_is_refused() -> None:
    with pytest.raises(InvalidInput, match="same batch"):
        Batch().new_job("a").depends_on(Batch().new_job("b"))


def test_a_job_names_its_pool_and_a_bad_name_is_refused() -> None:
    from corral.client.compile import compile_jobs

    b = Batch(name="pools")
    j = b.new_job("on-gpu").pool("gpu")
    j.command("nvidia-smi")
    k = b.new_job("anywhere")
    k.command("true")
    with pytest.raises(InvalidInput, match="pool"):
        k.pool("no spaces")
    specs = compile_jobs([j, k], registry={}, batch_key="x", tmpdir="file:///t", outputs=[], cwd=Path("."))
    assert [s.pool for s in specs] == ["gpu", None]
