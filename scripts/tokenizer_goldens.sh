#!/usr/bin/env bash
# Regenerates the golden token ids of tests/fixtures/tokenizers/ from the reference tokenizers on
# npm (installed by scripts/fetch_tokenizer_refs.sh into ${CANDOR_NPM_CACHE:-~/.cache/candor/npm}).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/fetch_tokenizer_refs.sh"
node "$root/scripts/tokenizer_goldens.js" "${CANDOR_NPM_CACHE:-$HOME/.cache/candor/npm}" \
  "$root/tests/fixtures/tokenizers"
