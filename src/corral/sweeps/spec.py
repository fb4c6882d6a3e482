"""A sweep's definition, checked whole before anything is submitted, its chunks and its identity.

Identity: a chunk's key is a digest of its rows and of what runs on them (command, image, result
format and schema), so the same rows under the same command always have the same key wherever they
sit in the table; the sweep's version is a digest of its name and its chunk keys in order.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import pyarrow as pa

from corral.domain.resources import parse_bytes, parse_cpu_mcpu, parse_memory_bytes
from corral.errors import InvalidInput
from corral.sweeps.command import (
    RESULT_FORMATS,
    Command,
    CommandTemplate,
    FunctionCommand,
    parse_command,
)
from corral.sweeps.table import RESERVED_COLUMNS, ROW_COLUMN, TableSource, load_table

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_ATTEMPTS = 100
MAX_CHUNKS = 1_000_000


def parse_schema(schema: pa.Schema | Mapping[str, Any] | None) -> pa.Schema | None:
    """{"loglik": "float64", "ok": "bool"} or a pyarrow Schema: the columns every result must have."""
    if schema is None:
        return None
    if isinstance(schema, pa.Schema):
        return schema
    if not isinstance(schema, Mapping) or not schema:
        raise InvalidInput("schema: give {column: type} such as {'loglik': 'float64'}", field="schema")
    fields = []
    for name, kind in schema.items():
        if isinstance(kind, pa.DataType):
            fields.append(pa.field(str(name), kind))
            continue
        try:
            fields.append(pa.field(str(name), pa.type_for_alias(str(kind))))
        except ValueError:
            raise InvalidInput(
                f"schema: column {name!r} has unknown type {kind!r}; use int64, float64, string, bool, ...",
                field="schema",
            ) from None
    for f in fields:
        if f.name in RESERVED_COLUMNS:
            raise InvalidInput(f"schema: column {f.name!r} is reserved by the sweep", field="schema")
    return pa.schema(fields)


@dataclass(frozen=True)
class Chunk:
    index: int
    key: str
    start: int  # first row in the table
    n_rows: int
    rows: pa.Table | None = None  # the parameter rows (without _row); None when read from storage

    def input_table(self) -> pa.Table:
        assert self.rows is not None
        return self.rows.append_column(ROW_COLUMN, pa.array(range(self.n_rows), pa.int64()))

    def describe(self) -> str:
        return f"chunk {self.index} (rows {self.start}-{self.start + self.n_rows - 1})"


@dataclass
class SweepSpec:
    name: str
    table: pa.Table | None  # None for a sweep read back from its manifest
    command: Command
    chunk_size: int = 100
    image: str | None = None
    cpu: str | None = None
    memory: str | None = None
    storage_request: str | None = None
    gpus: int = 0
    pool: str | None = None
    timeout: float | None = None
    n_max_attempts: int = 3
    result_format: str = "parquet"
    schema: pa.Schema | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def recipe(self) -> str:
        """What runs on each chunk, as text: part of every chunk key."""
        schema = "" if self.schema is None else self.schema.to_string(show_schema_metadata=False)
        return "\0".join([self.command.identity, self.image or "", self.result_format, schema])

    def chunks(self) -> list[Chunk]:
        assert self.table is not None
        recipe = hashlib.sha256(self.recipe.encode()).digest()
        out: list[Chunk] = []
        for index, start in enumerate(range(0, self.table.num_rows, self.chunk_size)):
            rows = self.table.slice(start, self.chunk_size)
            h = hashlib.sha256(recipe)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, rows.schema) as writer:
                writer.write_table(rows)
            h.update(sink.getvalue().to_pybytes())
            out.append(Chunk(index, h.hexdigest()[:24], start, int(rows.num_rows), rows))
        return out

    def version(self, chunks: list[Chunk]) -> str:
        h = hashlib.sha256(self.name.encode())
        for c in chunks:
            h.update(c.key.encode())
        return h.hexdigest()[:16]


class SpecOptions(TypedDict, total=False):
    """The optional arguments of `corral.Sweep` that define what runs (defaults: `SweepSpec`'s)."""

    chunk_size: int  # rows per job
    image: str | None
    cpu: str | float | None
    memory: str | float | None
    storage: str | float | None
    gpus: int
    pool: str | None
    timeout: float | None  # seconds per chunk
    n_max_attempts: int
    result_format: str  # parquet | csv | jsonl
    schema: pa.Schema | Mapping[str, Any] | None  # the columns every result must have
    env: Mapping[str, str] | None


def check_option_names(options: Mapping[str, Any], caller: str) -> None:
    """A misspelt keyword is a TypeError naming it (as Python says for an explicit signature)."""
    for key in options:
        if key not in SpecOptions.__optional_keys__:
            near = difflib.get_close_matches(key, sorted(SpecOptions.__optional_keys__), n=1, cutoff=0.7)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}{hint}")


def build_spec(
    name: str, table: TableSource, command: str | Callable[..., Any], **options: Unpack[SpecOptions]
) -> SweepSpec:
    """Every check a sweep needs before submission; each failure is an InvalidInput naming the field."""
    check_option_names(options, "build_spec")
    chunk_size = options.get("chunk_size", 100)
    image = options.get("image")
    cpu = options.get("cpu")
    memory = options.get("memory")
    storage = options.get("storage")
    gpus = options.get("gpus", 0)
    pool = options.get("pool")
    timeout = options.get("timeout")
    n_max_attempts = options.get("n_max_attempts", 3)
    result_format = options.get("result_format", "parquet")
    schema = options.get("schema")
    env = options.get("env")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput(
            f"name: {name!r} is not a sweep name; use letters, digits, '_', '.', '-' (at most 100)",
            field="name",
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInput(f"chunk_size: {chunk_size!r} must be a whole number of rows, at least 1",
                           field="chunk_size")
    if isinstance(n_max_attempts, bool) or not isinstance(n_max_attempts, int) or not (
        1 <= n_max_attempts <= MAX_ATTEMPTS
    ):
        raise InvalidInput(f"n_max_attempts: {n_max_attempts!r} must be from 1 to {MAX_ATTEMPTS}",
                           field="n_max_attempts")
    if result_format not in RESULT_FORMATS:
        raise InvalidInput(f"result_format: {result_format!r} is not one of {', '.join(RESULT_FORMATS)}",
                           field="result_format")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise InvalidInput(f"gpus: {gpus!r} must be a whole number, 0 or more", field="gpus")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):
        raise InvalidInput(f"timeout: {timeout!r} must be a positive number of seconds", field="timeout")
    if cpu is not None:
        parse_cpu_mcpu(cpu, field="cpu")
    if memory is not None:
        parse_memory_bytes(memory, 1000, field="memory")
    if storage is not None:
        parse_bytes(storage, field="storage")
    loaded = load_table(table)
    if -(-loaded.num_rows // chunk_size) > MAX_CHUNKS:
        raise InvalidInput(
            f"chunk_size: {loaded.num_rows:,} rows in chunks of {chunk_size} make more than {MAX_CHUNKS:,} "
            "chunks; use larger chunks",
            field="chunk_size",
        )
    parsed = parse_command(command, loaded.column_names)
    return SweepSpec(
        name=name,
        table=loaded,
        command=parsed,
        chunk_size=chunk_size,
        image=image,
        cpu=None if cpu is None else str(cpu),
        memory=None if memory is None else str(memory),
        storage_request=None if storage is None else str(storage),
        gpus=gpus,
        pool=pool,
        timeout=None if timeout is None else float(timeout),
        n_max_attempts=n_max_attempts,
        result_format=result_format,
        schema=parse_schema(schema),
        env={str(k): str(v) for k, v in (env or {}).items()},
    )


def to_manifest(spec: SweepSpec, chunks: list[Chunk], version: str) -> dict[str, Any]:
    """Everything needed to check, merge and rerun the sweep without the caller's Python objects."""
    command = dataclasses.asdict(spec.command)
    command["kind"] = "function" if isinstance(spec.command, FunctionCommand) else "template"
    return {
        "name": spec.name,
        "version": version,
        "command": command,
        "chunk_size": spec.chunk_size,
        "image": spec.image,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "storage": spec.storage_request,
        "gpus": spec.gpus,
        "pool": spec.pool,
        "timeout": spec.timeout,
        "n_max_attempts": spec.n_max_attempts,
        "result_format": spec.result_format,
        "schema": None if spec.schema is None else {f.name: str(f.type) for f in spec.schema},
        "env": spec.env,
        "columns": [] if spec.table is None else spec.table.column_names,
        "n_rows": sum(c.n_rows for c in chunks),
        "chunks": [[c.index, c.key, c.start, c.n_rows] for c in chunks],
    }


def from_manifest(data: dict[str, Any]) -> tuple[SweepSpec, list[Chunk]]:
    command_data = dict(data["command"])
    kind = command_data.pop("kind")
    command: Command
    if kind == "function":
        command = FunctionCommand(**command_data)
    else:
        command = CommandTemplate(command_data["text"], tuple(command_data["fields"]),
                                  tuple(command_data["columns"]))
    spec = SweepSpec(
        name=data["name"], table=None, command=command, chunk_size=data["chunk_size"], image=data["image"],
        cpu=data["cpu"], memory=data["memory"], storage_request=data["storage"], gpus=data["gpus"],
        pool=data["pool"], timeout=data["timeout"], n_max_attempts=data["n_max_attempts"],
        result_format=data["result_format"], schema=parse_schema(data["schema"]), env=data["env"],
    )
    chunks = [Chunk(int(i), str(k), int(s), int(n)) for i, k, s, n in data["chunks"]]
    return spec, chunks
