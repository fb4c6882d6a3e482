#!/usr/bin/env bash
# The whole suite: lint, types, then unit, integration (SQLite + PostgreSQL) and acceptance tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";  ruff check src tests bench
echo "== mypy";  mypy
echo "== postgres"; export CORRAL_TEST_PG_DSN="${CORRAL_TEST_PG_DSN:-$(scripts/postgres.sh start)}"; echo "$CORRAL_TEST_PG_DSN"
echo "== pytest"
pytest -q -p no:cacheprovider "$@"
