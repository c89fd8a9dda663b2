#!/usr/bin/env bash
# Installs everything into .venv, then starts the offline demo (pass --script for the guided tour).
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/loyalty demo "$@"
