#!/usr/bin/env bash
# Installs everything into .venv, then runs the test suite, ruff and mypy.
# Set LOYALTY_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test to run it on PostgreSQL too.
source "$(dirname "$0")/bootstrap.sh"
# The Mini App's tests drive a real browser: Debian's Chromium (Playwright cannot download its own here), and CJK
# fonts so the Chinese screens render.
if [ ! -x /usr/bin/chromium ] || ! ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Chromium and CJK fonts for the Mini App's browser tests (apt-get, first run only)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "The Mini App's browser tests need Chromium and CJK fonts: sudo apt-get install chromium fonts-noto-cjk" >&2
  fi
fi
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
