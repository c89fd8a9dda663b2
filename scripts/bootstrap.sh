# Sourced by the other scripts: a project virtualenv with the package and its test tools installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv (first run only)..." >&2
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependency list changed, so repeated runs start fast.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  # A minute or two of pip with --quiet looks like a hang: say what is happening.
  echo "Installing Loyalty Assistant and its dependencies into .venv (first run, or pyproject.toml changed)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
  echo "Installed." >&2
fi
