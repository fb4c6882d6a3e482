"""A benchmark recipe (YAML), validated with pydantic: an unknown or wrong field is an error naming it.

name: redis-get-set
service: {type: redis, params: {io_threads: 1}, resources: {cpu: 1, memory: 512Mi}, ready: {deadline: 60}}
clients:
  - {type: redis-benchmark, params: {tests: [get, set]}, load: {concurrency: 8},
     stop: {min_duration: 2, min_requests: 20000}, warmup: {requests: 2000}}
matrix: {service: {io_threads: [1, 2]}, client: {concurrency: [1, 8, 32]}}
repetitions: 2
seed: 7
slo: [{metric: p99_ms, max: 5}]
references: [{metric: throughput, value: 50000, tolerance: 0.5}]
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corral.errors import InvalidInput

ParamValue = str | int | float | bool | list[str] | list[int] | list[float] | None
LOAD_KEYS = ("concurrency", "rate")
STOP_KEYS = ("min_duration", "min_requests")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    cpu: str | float | None = None
    memory: str | None = None
    storage: str | None = None
    gpus: int = 0


class Readiness(_Strict):
    deadline: float = Field(default=300.0, gt=0)
    interval: float = Field(default=0.5, gt=0)
    probes: list[dict[str, Any]] = Field(default_factory=list)  # Probe shapes of docs/worker-protocol.md


class ServiceConfig(_Strict):
    type: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    image: str | None = None
    command: str | None = None  # the `command` type's command (with {port.NAME} templates)
    ports: list[str] | None = None
    ready: Readiness = Field(default_factory=Readiness)
    grace_period: float = Field(default=10.0, ge=0)
    pool: str | None = None


class Load(_Strict):
    """Closed loop (concurrency: requests in flight) or open loop (rate: Poisson arrivals per second)."""

    concurrency: int | None = Field(default=None, ge=1, le=10_000)
    rate: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> Load:
        if self.concurrency is not None and self.rate is not None:
            raise ValueError("give either concurrency (closed loop) or rate (open loop), not both")
        if self.concurrency is None and self.rate is None:
            self.concurrency = 1
        return self


class Stop(_Strict):
    """A run lasts until BOTH a minimum duration and a minimum request count are reached."""

    min_duration: float = Field(default=5.0, gt=0)
    min_requests: int = Field(default=100, ge=1)
    max_duration: float = Field(default=600.0, gt=0)


class Warmup(_Strict):
    requests: int = Field(default=0, ge=0)
    duration: float = Field(default=0.0, ge=0)


class MetricsFrom(_Strict):
    """How the `command` client's output becomes metrics: JSON lines, CSV columns, or regexes."""

    format: Literal["json", "csv", "regex"] = "json"
    fields: dict[str, str] = Field(default_factory=dict)  # metric -> JSON key / CSV column / regex
    units: dict[str, str] = Field(default_factory=dict)


class ClientConfig(_Strict):
    type: str
    name: str | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1, le=64)
    placement: Literal["same", "other"] | None = None
    load: Load = Field(default_factory=Load)
    stop: Stop = Field(default_factory=Stop)
    warmup: Warmup = Field(default_factory=Warmup)
    resources: Resources = Field(default_factory=Resources)
    image: str | None = None
    command: str | None = None
    metrics: MetricsFrom | None = None
    pool: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.type


class Matrix(_Strict):
    """Service dimensions restart the service; client dimensions do not. `zip` varies listed dimensions
    together (equal lengths); `exclude` drops combinations that match every given value."""

    service: dict[str, list[ParamValue]] = Field(default_factory=dict)
    client: dict[str, list[ParamValue]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list)
    exclude: list[dict[str, ParamValue]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> Matrix:
        dims = {**self.service, **self.client}
        for group in self.zip:
            missing = [d for d in group if d not in dims]
            if missing:
                raise ValueError(f"zip names {missing}, which are not matrix dimensions")
            if len({len(dims[d]) for d in group}) != 1:
                raise ValueError(f"zip {group}: the dimensions need the same number of values")
            if len({d in self.service for d in group}) != 1:
                raise ValueError(f"zip {group}: zip service dimensions with service dimensions only")
        for key, values in dims.items():
            if not values:
                raise ValueError(f"dimension {key!r} has no values")
        return self


class Slo(_Strict):
    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> Slo:
        if self.max is None and self.min is None:
            raise ValueError("give max or min")
        return self


class Reference(_Strict):
    """An expected value with a relative tolerance, or a baseline session to compare with."""

    metric: str
    value: float | None = None
    baseline: str | None = None  # a session name or id
    tolerance: float = Field(default=0.1, ge=0)
    where: dict[str, ParamValue] = Field(default_factory=dict)  # only cells with these parameters

    @model_validator(mode="after")
    def _target(self) -> Reference:
        if (self.value is None) == (self.baseline is None):
            raise ValueError("give exactly one of value or baseline")
        return self


class Recipe(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    service: ServiceConfig
    clients: list[ClientConfig] = Field(min_length=1)
    matrix: Matrix = Field(default_factory=Matrix)
    repetitions: int = Field(default=1, ge=1, le=100)
    seed: int = 0
    slo: list[Slo] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    pool: str | None = None
    python: str | None = None  # the interpreter that runs Corral's client harness on instances

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "recipe"


def parse_recipe(raw: Any, *, source: str = "recipe") -> Recipe:
    """A dict (from YAML or JSON) -> Recipe; InvalidInput naming the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source}: a recipe is a mapping with service and clients", field="recipe")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field(tuple(p for p in error["loc"] if p not in ("function-after",)))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and the recipe reference in docs/sessions.md)"
        raise InvalidInput(f"{source}: {field}: {message}", field=field) from None


def load_recipe(path: str | Path) -> Recipe:
    text = Path(path).read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc})", field="recipe") from None
    return parse_recipe(raw, source=str(path))


# ---------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Cell:
    """One combination of matrix values: its id, service part (restarts the service) and client part."""

    id: str
    service: dict[str, ParamValue]
    client: dict[str, ParamValue]

    @property
    def params(self) -> dict[str, ParamValue]:
        return {**self.service, **self.client}

    @property
    def service_key(self) -> str:
        return json.dumps(self.service, sort_keys=True)


def _combinations(dims: dict[str, list[ParamValue]], zips: list[list[str]]) -> list[dict[str, ParamValue]]:
    groups: list[list[str]] = [g for g in zips if all(d in dims for d in g)]
    zipped = {d for g in groups for d in g}
    groups += [[d] for d in dims if d not in zipped]
    axes = [
        [dict(zip(g, values, strict=True)) for values in zip(*(dims[d] for d in g), strict=True)]
        for g in groups
    ]
    out: list[dict[str, ParamValue]] = []
    for combo in itertools.product(*axes) if axes else [()]:
        merged: dict[str, ParamValue] = {}
        for part in combo:
            merged.update(part)
        out.append(merged)
    return out


def expand_matrix(recipe: Recipe) -> list[Cell]:
    m = recipe.matrix
    cells: list[Cell] = []
    for service in _combinations(m.service, m.zip):
        for client in _combinations(m.client, m.zip):
            params = {**service, **client}
            if any(all(params.get(k) == v for k, v in ex.items()) for ex in m.exclude):
                continue
            cells.append(Cell(f"c{len(cells) + 1}", service, client))
    if not cells:
        raise InvalidInput(
            "matrix.exclude: every combination is excluded; nothing to run", field="matrix.exclude"
        )
    return cells


def client_for_cell(client: ClientConfig, cell: Cell) -> ClientConfig:
    """The client config with the cell's client dimensions applied (load, stop, or params)."""
    data = client.model_dump()
    for key, value in cell.client.items():
        if key in LOAD_KEYS:
            data["load"] = {"concurrency": None, "rate": None, key: value}
        elif key in STOP_KEYS:
            data["stop"][key] = value
        else:
            data["params"][key] = value
    return ClientConfig.model_validate(data)


def service_for_cell(service: ServiceConfig, cell: Cell) -> ServiceConfig:
    data = service.model_dump()
    data["params"].update(cell.service)
    return ServiceConfig.model_validate(data)
