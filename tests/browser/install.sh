#!/usr/bin/env bash
# Installs what the browser test needs: Debian's chromium and playwright-core (from the committed
# package-lock.json, into tests/browser/node_modules). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
fi
for tool in node npm curl jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install.sh: $tool is missing (apt-get install -y nodejs npm curl jq)" >&2; exit 1; }
done
cd "$here"
npm ci --no-audit --no-fund
echo "browser test dependencies installed: $(chromium --version 2>/dev/null || echo chromium)"
