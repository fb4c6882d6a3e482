"""W8: container start latency per job: the oci runtime against raw `runc run` / `crun run` of the same
bundle, interleaved in the same run. Target: the oci runtime ≤ 1.5 x raw.

Both sides run `true` in the small test image (scripts/test-image.sh) pulled once from a private registry
(scripts/registry.sh). Raw: the engine run on the bundle the oci runtime would write (same config, same
cgroup placement), with the unpacked image as its root. Corral: `OciRuntime.run` of a job, which adds
the overlay root, the job's cgroup with its limits, config.json, usage and OOM reading, and the unmount.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from bench.context import Context
from bench.model import Result, failed, measured
from bench.paths import ROOT, WORK
from corral.config import Settings
from corral.images.config import ImagesConfig
from corral.images.pull import ImageInfo
from corral.runtimes.base import MainRequest
from corral.runtimes.oci import OciRuntime
from corral.runtimes.oci.bundle import container_config

TARGET_RATIO = 1.5


def _registry(ctx: Context, work: Path) -> str:
    directory = work / "registry"
    script = str(ROOT / "scripts" / "registry.sh")
    out = subprocess.run([script, "start", str(directory)], check=True, capture_output=True, text=True)
    ctx.cleanup.callback(subprocess.run, [script, "stop", str(directory)], check=False)
    return out.stdout.strip().splitlines()[-1]


def _image(work: Path, registry: str) -> str:
    layout = work / "layout"
    subprocess.run([str(ROOT / "scripts" / "test-image.sh"), str(layout)], check=True, capture_output=True)
    ref = f"{registry}/corral/bench:1"
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:test",
                    f"docker://{ref}"], check=True)
    return ref


def _request(work: Path, image: str, n: int) -> MainRequest:
    scratch = work / "jobs" / f"{n}"
    for d in ("io", "tmp"):
        (scratch / d).mkdir(parents=True, exist_ok=True)
    return MainRequest(
        key=f"8.{n}.1", command=["/bin/true"], io_dir=scratch / "io", scratch=scratch,
        tmp_dir=scratch / "tmp", log_path=scratch / "main.log", image=image, network="none",
        cores_mcpu=1000, memory_bytes=256 << 20,
    )


async def _series(work: Path, engine_name: str, registry: str, image: str, runs: int
                  ) -> tuple[list[float], list[float], str]:
    home = work / f"home-{engine_name}"
    images = ImagesConfig.model_validate({"registries": {registry: {"insecure": True}},
                                         "oci_runtime": engine_name})
    rt = OciRuntime(instance_name=f"bench-{engine_name}", work_dir=home / "worker",
                    settings=Settings(home=home, images=images))
    await rt.start()
    try:
        assert rt.images is not None and rt.engine is not None and rt.cgroups is not None
        warm = await rt.run(_request(work, image, 0), asyncio.Event())  # the pull, not counted
        if warm.state != "succeeded":
            raise RuntimeError(f"oci runtime could not run the image: {warm.error}")
        lease = await rt.images.acquire(image)
        raw_ms: list[float] = []
        oci_ms: list[float] = []
        try:
            for i in range(1, runs + 1):
                raw_ms.append(await _raw_once(rt, lease.rootfs, lease.info, work, image, i))
                req = _request(work, image, 10_000 + i)
                t0 = time.perf_counter()
                result = await rt.run(req, asyncio.Event())
                oci_ms.append((time.perf_counter() - t0) * 1000)
                if result.state != "succeeded":
                    raise RuntimeError(f"oci job failed: {result.error} {req.log_path.read_text()}")
        finally:
            lease.release()
        note = rt.engine.name + (" in a private mount namespace (hybrid cgroups)" if rt.engine.private_mounts
                                 else "")
        return raw_ms, oci_ms, note
    finally:
        await rt.close()


async def _raw_once(rt: OciRuntime, rootfs: Path, info: ImageInfo, work: Path, image: str, n: int) -> float:
    assert rt.engine is not None and rt.cgroups is not None
    req = _request(work, image, n)
    bundle = req.scratch / "raw-bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    cgroup = f"{rt.cgroups.relative}/raw-{n}-{uuid.uuid4().hex[:6]}"
    config = container_config(req, info, rootfs, cgroups_path=cgroup, netns_path=None, extra_mounts=[])
    config["root"]["readonly"] = True  # the cache's copy: nothing may write to it
    (bundle / "config.json").write_text(json.dumps(config))
    argv = rt.engine.run_argv(bundle, f"bench-raw-{n}-{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    elapsed = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"raw {rt.engine.name} run failed: {err.decode(errors='replace').strip()}")
    return elapsed


def run(ctx: Context) -> list[Result]:
    runs = 20 if ctx.sizes.quick else 50
    work = WORK / "w8"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        registry = _registry(ctx, work)
        image = _image(work, registry)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        error = f"registry or image build failed (scripts/setup.sh --test installs the tools): {exc}"[:400]
        return [failed("W8", "Corral oci", "start latency", "ms", error)]
    results: list[Result] = []
    for engine in ("runc", "crun"):
        metric = f"start latency ({engine})"
        try:
            raw_ms, oci_ms, how = asyncio.run(_series(work, engine, registry, image, runs))
        except Exception as exc:
            ctx.log(f"W8 {engine}: FAILED {type(exc).__name__}: {exc}")
            error = f"{type(exc).__name__}: {exc}"[:400]
            results.append(failed("W8", f"Corral oci ({engine})", metric, "ms", error))
            continue
        raw = measured("W8", f"raw {engine} run", metric, raw_ms, "ms",
                       note=f"{runs} x `true`, same bundle, {how}")
        oci = measured("W8", f"Corral oci ({engine})", metric, oci_ms, "ms")
        assert raw.value is not None and oci.value is not None
        ratio = oci.value / raw.value
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        oci.note = (f"{ratio:.2f}x raw {engine} (median); target ≤ {TARGET_RATIO}x raw: {verdict}; "
                    "overlay root, job cgroup + limits, config.json, usage/OOM read, unmount")
        ctx.log(f"W8 {engine}: raw {raw.value:.1f} ms, oci {oci.value:.1f} ms ({ratio:.2f}x)")
        results += [raw, oci]
    shutil.rmtree(work / "jobs", ignore_errors=True)
    return results
