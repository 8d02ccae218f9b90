#!/bin/sh
# The PostgreSQL server that tests/test_tune.py starts on 127.0.0.1 (zoo tune --storage postgresql://).
# Installs Debian's package when no server binaries are found; the tests start and stop their own
# server, so whatever the package starts on its own is stopped again here.
set -eu
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "scripts/postgres.sh: no PostgreSQL server found; install it (Debian: apt-get install postgresql) or the PostgreSQL test skips" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 || {
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends postgresql >/dev/null
}
# Debian's package may start a cluster of its own: it is not the tests', so it does not keep running.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r version name _; do pg_ctlcluster "$version" "$name" stop 2>/dev/null || true; done
fi
ls /usr/lib/postgresql/*/bin/initdb
