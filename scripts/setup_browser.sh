#!/usr/bin/env bash
# Installs headless Chromium from Debian's packages for tests/test_browser.py (idempotent: does
# nothing when /usr/bin/chromium is already there). CI runs as root on a fresh machine.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "setup_browser: $(chromium --version 2>/dev/null || echo chromium) ready"
  exit 0
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
echo "setup_browser: installing chromium from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "setup_browser: $(chromium --version) ready"
