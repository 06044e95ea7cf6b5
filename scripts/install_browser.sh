#!/usr/bin/env bash
# Install the headless browser tests/test_browser.py drives: Debian's chromium and
# chromium-driver. Runs apt-get only as root on a Debian-like system, and only in CI or when
# the browser is missing; otherwise it says why it did nothing (the test then skips).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "chromium and chromedriver are installed"; exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "not root or no apt-get: install chromium and chromium-driver to run the browser test"
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "installed $(chromium --version)"
