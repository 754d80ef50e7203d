#!/usr/bin/env bash
# The main job, on a fresh CPU machine: set up the host (idempotent), then start ComfyUI headless with
# the pack and the emoji demo model that ships in demo/, run the shipped workflows (an inversion and
# reconstruction, edits of one emoji of a held-out scene, the eta sweep, a stroke-to-image run, the
# solvers), and write the images and one side-by-side sheet to output/demo/. No downloads.
#
# To use the pack in the web UI instead, from the repo root: .venv/bin/python -m harness.host serve --port 8188
# COMFYUI_DIR=/path/to/ComfyUI runs it on that tree instead (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
eval "$(cd "$ROOT" && python3 -m harness.host paths)"  # COMFY and VENV
(cd "$ROOT" && python3 -m harness.host host)
# The demo is the package demo/ of the repo root; the caller's directory stays the run's (--out DIR).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m demo.run_demo "$@"
