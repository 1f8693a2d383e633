#!/usr/bin/env bash
# Idempotent set-up of the browser page and its tests: Debian's chromium (for the headless end-to-end tests) and
# web/node_modules (onnxruntime-web, playwright-core) from web/package-lock.json. Each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if [ ! -x /usr/bin/chromium ]; then
  echo "[web-setup] installing Debian's chromium"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "[web-setup] installing Debian's nodejs and npm"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi

# npm ci again only when the lock file changed since the last install (or node_modules is gone)
stamp=web/node_modules/.audioforge-lock
want=$(sha256sum web/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -f web/node_modules/onnxruntime-web/package.json ]; then
  echo "[web-setup] npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --ignore-scripts)
  echo "$want" > "$stamp"
fi
