"""What a chunk's job runs: a command template or a Python function, rendered into a bash script.

Template placeholders: `{chunk}` (the chunk's rows as Parquet, with a `_row` column), `{result}` (where
the job writes its result) and `{column}` for any parameter column. A template that names a column
runs once per row of the chunk (values shell-quoted), each run writing its own `{result}`; `{row}` is
then the row's position in the chunk. `{{` and `}}` are literal braces (bash's `${{HOME}}`).
"""

from __future__ import annotations

import hashlib
import shlex
import string
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import InvalidInput

CHUNK_PATH = "/io/chunk.parquet"
RESULT_FORMATS = ("parquet", "csv", "jsonl")
_BUILTIN = ("chunk", "result", "row")
FUNCTION_DIR = "/io/sweep-fn"


def result_path(fmt: str, per_row: bool) -> str:
    return f"/io/result/{{row}}.{fmt}" if per_row else f"/io/result.{fmt}"


@dataclass(frozen=True)
class CommandTemplate:
    text: str
    fields: tuple[str, ...]  # placeholder names in order of appearance
    columns: tuple[str, ...]  # the parameter columns among them

    @property
    def per_row(self) -> bool:
        return bool(self.columns) or "row" in self.fields

    @property
    def identity(self) -> str:
        return f"template:{self.text}"

    def script(self, rows: list[dict[str, Any]], fmt: str) -> str:
        """The job's bash script for a chunk with `rows` (only read in per-row mode)."""
        if not self.per_row:
            return self.text.format(chunk=CHUNK_PATH, result=result_path(fmt, False))
        lines = ["mkdir -p /io/result"]
        for i, row in enumerate(rows):
            values = {c: shlex.quote(_text(row[c])) for c in self.columns}
            lines.append(
                self.text.format(
                    chunk=CHUNK_PATH, row=i, result=result_path(fmt, True).format(row=i), **values
                )
            )
        return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)  # 1.0 stays "1.0", as the table has it
    return str(value)


def parse_template(text: str, columns: Sequence[str]) -> CommandTemplate:
    """Check a template against the table's columns; every mistake is an error naming the placeholder."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("command: give a command template or a Python function", field="command")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidInput(
            f"command: {exc} in {text!r}; write literal braces as {{{{ and }}}}", field="command"
        ) from None
    fields: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise InvalidInput(
                "command: empty or positional placeholder '{}'; name a column, {chunk} or {result} "
                "(literal braces are {{ and }})",
                field="command",
            )
        if spec or conversion:
            raise InvalidInput(f"command: placeholder {{{name}}} takes no format or conversion",
                               field="command")
        if name not in _BUILTIN and name not in columns:
            raise InvalidInput(
                f"command: {{{name}}} is not a column of the table (columns: {', '.join(columns)}) "
                "nor one of {chunk}, {result}, {row}; write literal braces as {{ and }}",
                field="command",
            )
        fields.append(name)
    if "result" not in fields:
        raise InvalidInput("command: the template must write its result to {result}", field="command")
    used_columns = tuple(dict.fromkeys(f for f in fields if f not in _BUILTIN))
    if "chunk" not in fields and not used_columns and "row" not in fields:
        raise InvalidInput(
            "command: the template reads no parameters; use {chunk} (the chunk's rows as Parquet) or name "
            "parameter columns such as {" + columns[0] + "}",
            field="command",
        )
    return CommandTemplate(text, tuple(fields), used_columns)


@dataclass(frozen=True)
class FunctionCommand:
    """A Python function `fn(chunk: pyarrow.Table) -> table-like`, run by `python -m corral.sweeps.pyjob`.

    The job imports the function by module and name: its module's file travels with the job (into
    /io/sweep-fn), and the interpreter is this one (`sys.executable`), so it must be visible to the job:
    true for local and same-machine workers whose Python is not under /tmp (the sandbox hides /tmp);
    elsewhere run a command template in an image that has your code."""

    module: str  # the import name in the job (found through the client's sys.path, given as PYTHONPATH)
    qualname: str
    source_file: str | None  # a script's or top-level module's file, shipped into FUNCTION_DIR
    source_digest: str
    python: str

    @property
    def identity(self) -> str:
        return f"function:{self.module}:{self.qualname}:{self.source_digest}"

    def script(self, rows: list[dict[str, Any]], fmt: str) -> str:
        del rows
        return " ".join(
            shlex.quote(a)
            for a in [
                self.python,
                "-m",
                "corral.sweeps.pyjob",
                f"{self.module}:{self.qualname}",
                CHUNK_PATH,
                result_path(fmt, False),
                FUNCTION_DIR,
            ]
        )

    @property
    def per_row(self) -> bool:
        return False


Command = CommandTemplate | FunctionCommand


def function_command(fn: Callable[..., Any]) -> FunctionCommand:
    qualname = getattr(fn, "__qualname__", "")
    module_name = getattr(fn, "__module__", None)
    if not qualname or "<" in qualname or module_name is None:
        raise InvalidInput(
            f"command: {fn!r} cannot be imported by name in the job; use a function defined at the top "
            "level of a module (not a lambda or nested function)",
            field="command",
        )
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None)
    if source is None:
        raise InvalidInput(f"command: the module of {qualname} has no file to send to the job",
                           field="command")
    path = Path(source).resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if module_name == "__main__":  # a script: its file travels with the job under a plain module name
        return FunctionCommand(f"sweep_fn_{path.stem}".replace("-", "_"), qualname, str(path), digest,
                               sys.executable)
    if "." not in module_name and path.name == f"{module_name}.py":
        # A top-level module travels too: its folder may be hidden from the job (e.g. under /tmp).
        return FunctionCommand(module_name, qualname, str(path), digest, sys.executable)
    return FunctionCommand(module_name, qualname, None, digest, sys.executable)


def parse_command(command: str | Callable[..., Any], columns: Sequence[str]) -> Command:
    if callable(command):
        return function_command(command)
    return parse_template(command, columns)
