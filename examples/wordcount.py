"""The README pipeline: split a file, count its lines, write the count next to this script.

Run with `corral run examples/wordcount.py` or `python examples/wordcount.py`.
"""

from __future__ import annotations

from pathlib import Path

import corral


def main() -> None:
    here = Path(__file__).resolve().parent
    data = here / "data.txt"
    if not data.exists():
        data.write_text("".join(f"line {i}\n" for i in range(100)))
    b = corral.Batch(name="wc", backend=corral.LocalBackend())
    a = b.new_job("split")
    a.command(f"split -n l/4 {b.read_input(str(data))} /io/part-; cat /io/part-* > {a.ofile}")
    c = b.new_job("count").depends_on(a).cpu(0.5).memory("256Mi").timeout(60)
    c.command(f"wc -l {a.ofile} > {c.ofile}")
    b.write_output(c.ofile, str(here / "out" / "count.txt"))
    result = b.run()
    print(result.status()["state"], (here / "out" / "count.txt").read_text().strip())


if __name__ == "__main__":
    main()
