#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL 15 cluster and PS_TEST_POSTGRES_URI pointing at it.
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user in a
# directory it owns. The cluster is removed when the command ends.
set -euo pipefail

if [ -n "${PS_TEST_POSTGRES_URI:-}" ]; then exec "$@"; fi

pg_bin=""
for candidate in "${PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then pg_bin="$candidate"; break; fi
done
if [ -z "$pg_bin" ]; then
  echo "with_postgres: no PostgreSQL server binaries found (install postgresql-15)" >&2
  exit 1
fi

run_as=()
owner="$(id -un)"
if [ "$(id -u)" = "0" ]; then
  owner=postgres
  run_as=(runuser -u postgres --)
fi

data_dir="$(mktemp -d /tmp/ps-pg.XXXXXX)"
chown "$owner" "$data_dir"
chmod 700 "$data_dir"
port="${PS_TEST_POSTGRES_PORT:-$(( 20000 + RANDOM % 20000 ))}"

cleanup() {
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$data_dir/db" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$data_dir"
}
trap cleanup EXIT

"${run_as[@]}" "$pg_bin/initdb" -D "$data_dir/db" -U postgres -A trust --no-sync >/dev/null
"${run_as[@]}" "$pg_bin/pg_ctl" -D "$data_dir/db" -w -l "$data_dir/server.log" \
  -o "-p $port -k $data_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
"${run_as[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE ps_state_test" >/dev/null

export PS_TEST_POSTGRES_URI="postgresql://postgres@127.0.0.1:$port/ps_state_test"
echo "with_postgres: throwaway PostgreSQL on 127.0.0.1:$port"
"$@"
