#!/bin/sh
# First start with an empty PGDATA: initdb, then role $POSTGRES_USER and database $POSTGRES_DB
# (password $POSTGRES_PASSWORD) and a small "entries" table. Every start: exec postgres.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\nlog_timezone = 'UTC'\ntimezone = 'UTC'\n" >>"$PGDATA/postgresql.conf"
  sockdir=$(mktemp -d)
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories='$sockdir'" \
    -l "$sockdir/init.log" start >/dev/null
  # psql interpolates :"var" and :'var' only in what it reads, not in -c.
  if [ "$POSTGRES_USER" != postgres ]; then
    echo "CREATE ROLE :\"u\" LOGIN PASSWORD :'pw';" | psql -X -q -h "$sockdir" -U postgres \
      -d postgres -v ON_ERROR_STOP=1 -v u="$POSTGRES_USER" -v pw="$POSTGRES_PASSWORD"
  fi
  if [ "$POSTGRES_DB" != postgres ]; then
    echo 'CREATE DATABASE :"d" OWNER :"u";' | psql -X -q -h "$sockdir" -U postgres -d postgres \
      -v ON_ERROR_STOP=1 -v u="$POSTGRES_USER" -v d="$POSTGRES_DB"
  fi
  psql -X -q -h "$sockdir" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE entries (id bigserial PRIMARY KEY, account text NOT NULL, cents bigint NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX entries_account ON entries (account);
INSERT INTO entries (account, cents)
SELECT 'acct-' || (g % 50), (g * 37) % 100000 FROM generate_series(1, 5000) g;
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  rm -rf "$sockdir"
fi
exec postgres -D "$PGDATA" "$@"
