#!/usr/bin/env bash
# The main job, on a fresh CPU machine: set up the host (idempotent), then start ComfyUI headless with
# the pack and the emoji demo model that ships in demo/, run the shipped workflows (an inversion and
# reconstruction, edits of one emoji of a held-out scene, the eta sweep, a stroke-to-image run, the
# solvers), and write the images and one side-by-side sheet to output/demo/. No downloads.
#
# To use the pack in the web UI instead: .venv/bin/python scripts/comfy_host.py serve --port 8188
# COMFYUI_DIR=/path/to/ComfyUI runs it on that tree instead (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
eval "$(python3 "$ROOT/scripts/comfy_host.py" paths)"  # COMFY and VENV
python3 "$ROOT/scripts/comfy_host.py" host
exec "$VENV/bin/python" "$ROOT/demo/run_demo.py" "$@"
