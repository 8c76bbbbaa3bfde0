#!/usr/bin/env bash
# Install what the browser test of the HTML reports needs: Debian's `chromium` (headless).
#
# Idempotent: does nothing when chromium (or chromium-browser) is already on PATH. Installs only when
# root on Debian/Ubuntu; anywhere else it prints how to install it and exits non-zero, so the test
# that called it fails with that message (under CI=true a missing browser is a failure, not a skip).
set -euo pipefail

log() { printf 'test-deps: %s\n' "$*" >&2; }

for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then
    log "$b already installed: $(command -v "$b")"
    exit 0
  fi
done

if [ "$(id -u)" -ne 0 ] || [ ! -f /etc/debian_version ]; then
  log "chromium is missing and this is not a root shell on Debian/Ubuntu."
  log "install it yourself: 'sudo apt-get install chromium' (Debian) or your distribution's package."
  exit 1
fi

log "installing Debian package chromium (headless browser for the report test)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v chromium >/dev/null 2>&1 || { log "chromium still not on PATH after install"; exit 1; }
log "installed: $(chromium --version 2>/dev/null || echo chromium)"
