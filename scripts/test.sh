#!/usr/bin/env bash
# Sets up the host (idempotent) and runs every test against it. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
[ ! -f "$ROOT/scripts/setup_browser.sh" ] || bash "$ROOT/scripts/setup_browser.sh"  # Chromium for tests/test_browser.py (idempotent)
cd "$ROOT"
# rootdir is tests/: the repo root is the pack's package (it has __init__.py, which imports the
# host), and pytest would otherwise try to import it as a test package.
exec .venv/bin/python -m pytest -c tests/pytest.ini --rootdir tests "$@"
