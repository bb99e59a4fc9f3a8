#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries for the tests that run the store on a real server
# (tests/conftest.py starts a throw-away cluster with them; nothing here starts a server).
# Idempotent and quiet: does nothing when initdb is already there (/usr/lib/postgresql/*/bin or
# $WORKBENCH_PG_BIN), or when apt-get is missing or not usable (scripts/apt_install.sh), in which
# case those tests skip themselves and say how to get a server.
set -euo pipefail

if [ -n "${WORKBENCH_PG_BIN:-}" ] && [ -x "${WORKBENCH_PG_BIN}/initdb" ]; then
  exit 0
fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" install_postgres postgresql "the PostgreSQL store tests"
found=$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | head -1 || true)
[ -n "$found" ] && echo "install_postgres: $("$found" --version 2>/dev/null || echo "$found")"
exit 0
