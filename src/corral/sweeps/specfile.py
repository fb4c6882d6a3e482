"""A sweep described in YAML, for `corral sweep run SPEC.yaml`:

    name: garch
    table: params.parquet            # relative to this file; or a URL; or `grid: {alpha: [1, 2], ...}`
    chunk_size: 100
    command: python fit.py --in {chunk} --out {result}    # or  function: mypkg.fits:fit
    image: registry.lab/fit:1
    cpu: 1
    memory: 2Gi
    pool: hpc
    n_max_attempts: 3
    schema: {loglik: float64, converged: bool}
    results: file:///data/sweeps     # default: the server's corral-local bucket
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.errors import InvalidInput


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    table: str | None = None
    grid: dict[str, list[Any]] | None = None
    chunk_size: int = 100
    command: str | None = None
    function: str | None = None  # module:function, importable from the folder
    image: str | None = None
    cpu: str | float | None = None
    memory: str | float | None = None
    storage: str | float | None = None
    gpus: int = 0
    pool: str | None = None
    timeout: float | None = None
    n_max_attempts: int = 3
    result_format: str = "parquet"
    schema_: dict[str, str] | None = Field(default=None, alias="schema")
    env: dict[str, str] | None = None
    results: str | None = None
    billing_project: str | None = None


def read_spec_file(path: Path) -> tuple[SweepFile, Path]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"spec: {path} does not exist", field="spec") from None
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"spec: cannot read {path}: {str(exc).splitlines()[0]}", field="spec") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"spec: {path} must be a YAML mapping (name:, table:, ...)", field="spec")
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"spec: {where}: {first['msg']}", field=where) from None
    if (spec.table is None) == (spec.grid is None):
        raise InvalidInput("spec: give exactly one of table: (a file or URL) and grid: (columns of values)",
                           field="table")
    if (spec.command is None) == (spec.function is None):
        raise InvalidInput("spec: give exactly one of command: (a template) and function: (module:name)",
                           field="command")
    return spec, path.resolve().parent


def load_function(target: str, folder: Path) -> Any:
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise InvalidInput(f"function: {target!r} must be module:function", field="function")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        found: Any = importlib.import_module(module_name)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"function: cannot import {target}: {exc}", field="function") from None
    return found


def sweep_arguments(spec: SweepFile, folder: Path) -> dict[str, Any]:
    """Keyword arguments for `corral.Sweep`."""
    if spec.table is not None:
        table: Any = spec.table if "://" in spec.table else str(folder / os.path.expanduser(spec.table))
    else:
        table = spec.grid
    command = spec.command if spec.command is not None else load_function(str(spec.function), folder)
    results = spec.results
    if results and "://" not in results:
        results = str(folder / os.path.expanduser(results))
    return dict(
        name=spec.name, table=table, command=command, chunk_size=spec.chunk_size, image=spec.image,
        cpu=spec.cpu, memory=spec.memory, storage=spec.storage, gpus=spec.gpus, pool=spec.pool,
        timeout=spec.timeout, n_max_attempts=spec.n_max_attempts, result_format=spec.result_format,
        schema=spec.schema_, env=spec.env, results_url=results, billing_project=spec.billing_project,
    )
