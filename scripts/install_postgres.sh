#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries for the tests that run the store on a real server
# (tests/conftest.py starts a throw-away cluster with them; nothing here starts a server).
# Idempotent and quiet: does nothing when initdb is already there (/usr/lib/postgresql/*/bin or
# $WORKBENCH_PG_BIN), or when apt-get is missing or not usable (not root and no passwordless
# sudo), in which case those tests skip themselves and say how to get a server.
set -euo pipefail

if [ -n "${WORKBENCH_PG_BIN:-}" ] && [ -x "${WORKBENCH_PG_BIN}/initdb" ]; then
  exit 0
fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_postgres: no apt-get; the PostgreSQL store tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "install_postgres: apt-get needs root; the PostgreSQL store tests will be skipped" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
    || echo "install_postgres: apt-get install postgresql failed; those tests will be skipped" >&2
fi
found=$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | head -1 || true)
[ -n "$found" ] && echo "install_postgres: $("$found" --version 2>/dev/null || echo "$found")"
exit 0
