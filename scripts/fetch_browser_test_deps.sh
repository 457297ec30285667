#!/usr/bin/env bash
# Installs playwright-core (the driver of the report tests in headless Chromium,
# tests/report_browser) from the npm registry into ${CANDOR_NPM_CACHE:-$HOME/.cache/candor/npm},
# outside the source tree. It drives Debian's /usr/bin/chromium and never downloads a browser.
# Idempotent and quiet: does nothing when it is present. Exits 1 with a warning when npm is
# missing or the registry is unreachable (scripts/setup.sh only warns; the browser tests skip).
set -uo pipefail

dir="${CANDOR_NPM_CACHE:-$HOME/.cache/candor/npm}"
name=playwright-core
version=1.65.2
manifest="$dir/node_modules/$name/package.json"
if [ -f "$manifest" ] && grep -q "\"version\": *\"$version\"" "$manifest"; then exit 0; fi

if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm not found; $name is not installed (the report tests in Chromium skip)" >&2
  exit 1
fi
mkdir -p "$dir" || exit 1
[ -f "$dir/package.json" ] || echo '{"name": "candor-tokenizer-refs", "private": true}' >"$dir/package.json"
echo "setup: installing $name@$version from npm into $dir" >&2
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the tests use Debian's chromium, never a downloaded one.
if ! (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 600 npm install --no-audit \
        --no-fund --silent "$name@$version" >/dev/null 2>&1); then
  echo "warning: could not install $name from npm (registry unreachable?);" \
       "the report tests in Chromium will skip" >&2
  exit 1
fi
exit 0
