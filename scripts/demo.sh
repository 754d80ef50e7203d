#!/usr/bin/env bash
# The main job: set up the host (idempotent), then start ComfyUI headless with the pack and print its address.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/comfy_host.py" serve "$@"
