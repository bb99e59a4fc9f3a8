#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` cannot download browsers here).
# Idempotent and quiet: does nothing when /usr/bin/chromium exists, or when apt-get is missing or
# not usable (scripts/apt_install.sh), in which case the browser tests skip themselves.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" install_browser chromium "browser tests"
[ -x /usr/bin/chromium ] && echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
exit 0
