#!/usr/bin/env bash
# Sets up the host (idempotent) and runs every test against it. Extra arguments go to pytest.
# COMFYUI_DIR=/path/to/ComfyUI runs them against that tree instead (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup_browser.sh"  # Chromium for tests/test_browser.py (idempotent)
cd "$ROOT"
eval "$(python3 -m harness.host paths)"  # COMFY and VENV
python3 -m harness.host host
# rootdir is tests/: the repo root is the pack's package (it has __init__.py, which imports the
# host), and pytest would otherwise try to import it as a test package. tests/pytest.ini puts the
# repo root on the import path (pythonpath), for the tooling's packages (harness, demo).
# With no arguments, collect tests/ only: pytest applies testpaths only when run from the rootdir,
# and output/ holds base directories whose custom_nodes link back to this repo.
[ $# -gt 0 ] || set -- tests
exec "$VENV/bin/python" -m pytest -c tests/pytest.ini --rootdir tests "$@"
