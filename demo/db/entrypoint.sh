#!/bin/sh
# shop/db entrypoint (runs as postgres). First start with an empty PGDATA: initdb, role and
# database "shop" (password from POSTGRES_PASSWORD), the schema. Every start: exec postgres.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "db: POSTGRES_PASSWORD must be set to initialise an empty $PGDATA" >&2
    exit 1
  fi
  echo "db: initialising $PGDATA"
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null

  cat >>"$PGDATA/pg_hba.conf" <<'HBA'

# shop: clients on the container network must give a password (SCRAM)
host    all             all             0.0.0.0/0               scram-sha-256
host    all             all             ::/0                    scram-sha-256
HBA
  cat >>"$PGDATA/postgresql.conf" <<'CONF'

# --- shop demo settings ---
listen_addresses = '*'
password_encryption = 'scram-sha-256'
max_connections = 100
shared_buffers = 128MB
shared_preload_libraries = 'pg_stat_statements'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 500
log_connections = off
log_timezone = 'UTC'
timezone = 'UTC'
CONF

  # Temporary server on a private socket only, so healthchecks and clients cannot see it.
  sockdir=$(mktemp -d)
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories='$sockdir'" \
    -l "$sockdir/init.log" start >/dev/null || { cat "$sockdir/init.log" >&2; exit 1; }
  psql -X -q -h "$sockdir" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE shop LOGIN PASSWORD :'pw';
CREATE DATABASE shop OWNER shop;
SQL
  psql -X -q -h "$sockdir" -U postgres -d shop -v ON_ERROR_STOP=1 \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
  psql -X -q -h "$sockdir" -U shop -d shop -v ON_ERROR_STOP=1 -f /usr/local/share/shop/schema.sql
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  rm -rf "$sockdir"
  echo "db: initialised (role shop, database shop, schema)"
fi

exec postgres -D "$PGDATA" "$@"
