#!/usr/bin/env bash
# Install the host tools opslib calls, from Debian's packages, and say what was installed.
#
#   scripts/host-tools.sh runbooks   what the runbooks use (make demo):
#       logrotate - the log-cleanup runbook checks its generated logrotate file with `logrotate -d`
#       gcc       - builds opslib's native log scanner (opslib/_logscan.c); without it the log
#                   analysis uses its polars path (same results, slower)
#   scripts/host-tools.sh test       the above, plus what only the tests use (make test):
#       chromium  - headless browser: the report test proves figures are drawn offline
#
# A runbook whose optional tool is missing does not crash: that check is reported "not run" with
# what to install. Idempotent: installs only what is missing. Installs only when root on
# Debian/Ubuntu; anywhere else it prints how to install them and exits non-zero.
set -euo pipefail

log() { printf 'host-tools: %s\n' "$*" >&2; }
mode=${1:-runbooks}
case "$mode" in runbooks|test) ;; *) log "usage: $0 runbooks|test"; exit 2 ;; esac

missing=()
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v "${CC:-cc}" >/dev/null 2>&1 || missing+=(gcc)
if [ "$mode" = test ]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
fi
wanted="logrotate, a C compiler"; [ "$mode" = test ] && wanted="$wanted, chromium"

if [ ${#missing[@]} -eq 0 ]; then
  log "present: $wanted"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || [ ! -f /etc/debian_version ]; then
  log "missing: ${missing[*]}; this is not a root shell on Debian/Ubuntu."
  log "install them yourself: 'sudo apt-get install ${missing[*]}' (Debian) or your distribution's packages."
  log "(runbooks still run: a check whose tool is missing is reported as 'not run')"
  exit 1
fi

log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in "${missing[@]}"; do
  case "$tool" in
    chromium) command -v chromium >/dev/null 2>&1 || { log "chromium still not on PATH after install"; exit 1; } ;;
    logrotate) command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || { log "logrotate still missing after install"; exit 1; } ;;
  esac
done
log "installed: ${missing[*]}"
