#!/usr/bin/env bash
# Install the host tools the tests need, from Debian's packages:
#   chromium  - headless browser: the report test proves figures are drawn offline
#   logrotate - the log-cleanup runbook checks its generated logrotate file with `logrotate -d`
#   gcc       - builds opslib's native log scanner (opslib/_logscan.c); the tests run the log
#               analysis with and without it
#
# Idempotent: installs only what is missing. Installs only when root on Debian/Ubuntu; anywhere
# else it prints how to install them and exits non-zero (make test then fails under CI=true).
set -euo pipefail

log() { printf 'test-deps: %s\n' "$*" >&2; }

missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v "${CC:-cc}" >/dev/null 2>&1 || missing+=(gcc)

if [ ${#missing[@]} -eq 0 ]; then
  log "chromium, logrotate and a C compiler present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || [ ! -f /etc/debian_version ]; then
  log "missing: ${missing[*]}; this is not a root shell on Debian/Ubuntu."
  log "install them yourself: 'sudo apt-get install ${missing[*]}' (Debian) or your distribution's packages."
  exit 1
fi

log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v chromium >/dev/null 2>&1 || { log "chromium still not on PATH after install"; exit 1; }
log "installed: ${missing[*]}"
