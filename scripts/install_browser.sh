#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` cannot download browsers here).
# Idempotent and quiet: does nothing when /usr/bin/chromium exists, or when apt-get is missing or
# not usable (not root and no passwordless sudo), in which case the browser tests skip themselves.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get; browser tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "install_browser: apt-get needs root; browser tests will be skipped" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || echo "install_browser: apt-get install chromium failed; browser tests will be skipped" >&2
fi
[ -x /usr/bin/chromium ] && echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
exit 0
