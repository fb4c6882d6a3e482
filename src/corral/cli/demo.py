"""`corral demo`: a word-count pipeline on the embedded system, with one deliberate failure.

generate (1 job) -> count slice 0..N-1 (fan out) -> merge (fan in, written to OUT/wordcounts.txt);
fail-on-purpose -> its normal child (Cancelled) and its always_run cleanup child (Success).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.client.dsl import Batch, Job

WORDS = [
    "corral",
    "batch",
    "job",
    "worker",
    "driver",
    "store",
    "schedule",
    "fair",
    "share",
    "cores",
    "memory",
    "queue",
    "pipeline",
    "input",
    "output",
    "log",
    "attempt",
    "cancel",
    "retry",
    "success",
    "cluster",
    "slurm",
    "gpu",
    "sweep",
]
FILES, LINES, WORDS_PER_LINE = 4, 50, 12
TOTAL_WORDS = FILES * LINES * WORDS_PER_LINE
SMALL = {"cpu": "0.25", "memory": "64Mi"}

GENERATE = """mkdir -p {corpus}
words=({words})
for f in $(seq 1 {files}); do
  for line in $(seq 1 {lines}); do
    out=""
    for w in $(seq 1 {per_line}); do
      out="$out ${{words[$(( (f * 7919 + line * 104729 + w * w * 1299709) % ${{#words[@]}} ))]}}"
    done
    echo $out
  done > {corpus}/part-$f.txt
done
echo "generated $(cat {corpus}/*.txt | wc -w) words in {files} files"
"""

COUNT = """cat {corpus}/*.txt | awk -v n={n} -v i={i} 'NR % n == i' | tr -s '[:space:]' '\\n' \\
  | grep -v '^$' | sort | uniq -c | awk '{{print $2, $1}}' > {out}
echo "slice {i}: $(wc -l < {out}) distinct words\""""

MERGE = """cat {inputs} | awk '{{c[$1] += $2}} END {{for (w in c) print c[w], w}}' \\
  | sort -k1,1nr -k2,2 > {out}
echo "merged {n} slices: $(awk '{{s += $1}} END {{print s}}' {out}) words\""""


@dataclass
class DemoPipeline:
    batch: Batch
    output: Path
    generate: Job
    counts: list[Job] = field(default_factory=list)
    merge: Job | None = None
    failing: Job | None = None
    cancelled_child: Job | None = None
    cleanup: Job | None = None

    def expected_states(self) -> dict[Job, str]:
        """The final state of every job when the batch behaves as designed."""
        expected = {job: "Success" for job in [self.generate, *self.counts]}
        for job, state in (
            (self.merge, "Success"),
            (self.failing, "Failed"),
            (self.cancelled_child, "Cancelled"),
            (self.cleanup, "Success"),
        ):
            if job is not None:
                expected[job] = state
        return expected


def _small(job: Job) -> Job:
    return job.cpu(SMALL["cpu"]).memory(SMALL["memory"])


def build_demo(batch: Batch, out_dir: Path, *, slices: int = 20) -> DemoPipeline:
    output = out_dir / "wordcounts.txt"
    gen = _small(batch.new_job("generate"))
    gen.command(
        GENERATE.format(
            corpus=gen.corpus, words=" ".join(WORDS), files=FILES, lines=LINES, per_line=WORDS_PER_LINE
        )
    )
    demo = DemoPipeline(batch, output, gen)
    for i in range(slices):
        count = _small(batch.new_job(f"count-{i:02d}", attributes={"slice": i}))
        count.command(COUNT.format(corpus=gen.corpus, n=slices, i=i, out=count.counts))
        demo.counts.append(count)
    merge = _small(batch.new_job("merge"))
    merge.command(
        MERGE.format(inputs=" ".join(str(c.counts) for c in demo.counts), n=slices, out=merge.result)
    )
    batch.write_output(merge.result, str(output))
    demo.merge = merge
    demo.failing = _small(batch.new_job("fails-on-purpose"))
    demo.failing.command("echo 'this job fails on purpose to show failure handling' >&2; exit 3")
    demo.cancelled_child = _small(batch.new_job("after-failure").depends_on(demo.failing))
    demo.cancelled_child.command("echo 'never runs: its parent failed'")
    demo.cleanup = _small(batch.new_job("cleanup").depends_on(demo.failing).always_run())
    demo.cleanup.command("echo 'always_run: cleaning up after the failed job'")
    return demo


def top_words(path: Path, n: int = 10) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines()[:n]:
        count, word = line.split()
        rows.append((word, int(count)))
    return rows


def check(demo: DemoPipeline, states: dict[int, str]) -> list[str]:
    """What differs from the design (empty: the demo behaved as designed)."""
    problems = []
    for job, want in demo.expected_states().items():
        got = states.get(job.job_id or -1)
        if got != want:
            problems.append(f"job {job.job_id} {job.display_name}: {got} (expected {want})")
    if not demo.output.exists():
        problems.append(f"{demo.output} was not written")
    else:
        total = sum(count for _, count in top_words(demo.output, n=10**9))
        if total != TOTAL_WORDS:
            problems.append(f"{demo.output} counts {total} words (expected {TOTAL_WORDS})")
    return problems


def summary(demo: DemoPipeline, status: dict[str, Any], states: dict[int, str]) -> dict[str, Any]:
    return {
        "batch": status,
        "jobs": {
            str(j.job_id): {"name": j._name, "state": states.get(j.job_id or -1)} for j in demo.batch.jobs
        },
        "output": str(demo.output),
        "top_words": top_words(demo.output) if demo.output.exists() else [],
        "problems": check(demo, states),
    }
