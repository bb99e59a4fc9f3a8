#!/usr/bin/env bash
# Installs one Debian package for tests that need it: apt_install.sh CALLER PACKAGE TESTS.
# Quiet, and never fails set-up: when apt-get is missing or not usable (not root and no
# passwordless sudo), or the install fails, it says in one line that TESTS will be skipped.
# Shared by install_browser.sh and install_postgres.sh, which check first whether it is needed.
set -euo pipefail
caller=$1 package=$2 tests=$3

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$caller: no apt-get; $tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "$caller: apt-get needs root; $tests will be skipped" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1 \
    || echo "$caller: apt-get install $package failed; $tests will be skipped" >&2
fi
exit 0
