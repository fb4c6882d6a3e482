"""`python -m corral …` runs the `corral` command."""

from __future__ import annotations

from corral.cli.main import app

if __name__ == "__main__":
    app(prog_name="corral")
