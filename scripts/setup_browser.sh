#!/usr/bin/env bash
# Headless Chromium and its driver for the web app's browser test (Debian's chromium + chromium-driver).
# Installs them only when they are missing and apt-get can run as root; otherwise the browser test skips.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup] no chromium/chromedriver and no root apt-get: the browser tests will skip"
  exit 0
fi
echo "[setup] installing chromium and chromium-driver (Debian packages) for the browser tests"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
