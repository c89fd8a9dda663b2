#!/usr/bin/env bash
# Installs everything into .venv, then runs the test suite, ruff and mypy.
# Set LOYALTY_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test to run it on PostgreSQL too.
source "$(dirname "$0")/bootstrap.sh"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
fi
[ "$status" -eq 0 ] || exit "$status"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
.venv/bin/mypy bot handlers web scheduler notifications loyalty storage emulator
