#!/usr/bin/env bash
# The main job on the default model (stories260K from ../shared, else candor's built-in LM):
# generate a short story, explain the story's continuation with several methods, and write the
# HTML report.
set -euo pipefail
cli="$1"
model="$2"
out_dir="${3:-out}"
builtin="$(cd "$(dirname "$0")/.." && pwd)/models/builtin/lm"
if [ ! -e "$model" ]; then
  if [ -e "$builtin/model.safetensors" ]; then
    echo "demo: $model is absent; using candor's built-in LM ($builtin)" >&2
    model="$builtin"
  else
    echo "demo: the model $model is absent and so is the built-in LM ($builtin);" >&2
    echo "demo: pass one with: make demo DEMO_MODEL=/path/to/model" >&2
    exit 1
  fi
fi
echo "demo: model $model"
mkdir -p "$out_dir"
prompt="Once upon a time, there was a little girl named Lily. She loved to play"
"$cli" info --model "$model"
echo
echo "== a short story (greedy)"
"$cli" generate --model "$model" --prompt "Once upon a time" -n 80
echo
echo "== why did the model continue the prompt the way it did?"
"$cli" explain --model "$model" --prompt "$prompt" --generate 12 --granularity word \
  --method integrated_gradients:n_steps=64 --method occlusion --method input_x_gradient \
  --method attention:mode=rollout --method logit_lens \
  --json "$out_dir/demo-explanation.json" --html "$out_dir/demo-report.html"
echo
echo "HTML report: $(cd "$out_dir" && pwd)/demo-report.html"
