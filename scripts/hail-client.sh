#!/usr/bin/env bash
# The stock Hail Batch client (hailtop, from the pinned `hail` package) in its own virtualenv at
# REPO/.venv-hail: hail pins older sqlalchemy/rich/typer/uvloop than Corral, so they can't share one.
# Idempotent: reinstalls only when the requirements file changed. Prints the venv's python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HAIL_CLIENT_VENV:-$root/.venv-hail}"
requirements="$root/tests/acceptance/hail_scenarios/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -c "import hailtop.batch" >&2
echo "$venv/bin/python"
