"""Job paths under /io map onto the attempt's io directory, and nothing escapes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import InvalidInput
from corral.files import host_path

IO = Path("/scratch/job/io")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/io/x", IO / "x"),
        ("/io/a/b/c.txt", IO / "a" / "b" / "c.txt"),
        ("a/b", IO / "a" / "b"),
        ("/io/a/../b", IO / "b"),
        ("/io", IO),
        ("/io/", IO),
    ],
)
def test_paths_under_io_map_to_the_io_dir(path: str, expected: Path) -> None:
    assert host_path(IO, path) == expected


@pytest.mark.parametrize("path", ["/etc/passwd", "/io/../etc/passwd", "../x", "/iox/y", ""])
def test_paths_outside_io_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        host_path(IO, path)
