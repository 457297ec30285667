#!/usr/bin/env bash
# The main job on the built-in default: until explanations land, generate a story with the real
# stories260K model from ../shared.
set -euo pipefail
cli="$1"
model="$2"
if [ ! -e "$model" ]; then
  echo "demo: the default model $model is absent (../shared/models/stories260K);" >&2
  echo "demo: pass one with: make demo DEMO_MODEL=/path/to/model" >&2
  exit 1
fi
"$cli" info --model "$model"
echo
"$cli" generate --model "$model" --prompt "Once upon a time" -n 120
