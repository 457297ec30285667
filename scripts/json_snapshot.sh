#!/usr/bin/env bash
# The JSON outputs of a fixed set of commands (explain, evaluate, distill, info, methods), with
# timing fields removed, written to OUT_DIR: run it on two builds and `diff -r` the folders to
# check that a restructuring changed no output. Usage: scripts/json_snapshot.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$(realpath "$1"); out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
src=$(pwd); shared=${CANDOR_SHARED:-$src/../shared}
cli="$build/candor"
mkdir -p "$out"; work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
lm=$src/models/builtin/lm; sent=$src/models/builtin/sentiment
# Timing, host and path fields are dropped; everything else must match.
strip() {
  python3 -c '
import json,sys
DROP={"elapsed_ms","elapsed_s","ms","seconds","time_s","wall_s","duration_ms","tokens_per_second","tok_per_s","timing","timestamp","created","rows_per_second","load_ms","prefill_ms","decode_ms","total_ms"}
def clean(x):
    if isinstance(x,dict): return {k:clean(v) for k,v in x.items() if k not in DROP and not k.endswith("_ms") and not k.endswith("_seconds")}
    if isinstance(x,list): return [clean(v) for v in x]
    return x
txt=open(sys.argv[1]).read()
try:
    objs=[json.loads(txt)]
except json.JSONDecodeError:
    objs=[json.loads(l) for l in txt.splitlines() if l.strip()]
with open(sys.argv[2],"w") as f:
    for o in objs: f.write(json.dumps(clean(o),indent=1,sort_keys=True)+"\n")
' "$1" "$2"
}
run() {  # NAME command... (JSON on stdout) ; failures are recorded, not fatal
  local name=$1; shift
  if "$@" > "$work/$name.raw" 2> "$work/$name.err"; then strip "$work/$name.raw" "$out/$name.json"
  else echo "exit $? $(tail -1 "$work/$name.err")" > "$out/$name.failed"; fi
}
explain() {  # NAME explain-args... (JSON to a file)
  local name=$1; shift
  if "$cli" explain "$@" --no-progress --json "$work/$name.raw" > "$out/$name.console.txt" 2> "$work/$name.err"; then
    strip "$work/$name.raw" "$out/$name.json"
    sed -i -E 's/[0-9.]+ ms/X ms/g; s/[0-9.]+ s\b/X s/g' "$out/$name.console.txt"
  else echo "exit $? $(tail -1 "$work/$name.err")" > "$out/$name.failed"; fi
}
run info_lm "$cli" info --model "$lm" --json
run info_sentiment "$cli" info --model "$sent" --json
for m in llama gpt2 bert qwen2 mistral_window; do run "info_$m" "$cli" info --model tests/fixtures/models/$m --json; done
"$cli" methods > "$out/methods.txt" 2>&1 || echo failed > "$out/methods.failed"
explain explain_lm_next --model "$lm" --prompt "Once upon a time there was a" --method integrated_gradients --method occlusion --method kernel_shap
explain explain_lm_span --model "$lm" --prompt "Lily went to the park" --generate 4 --method saliency --method integrated_gradients:n_steps=16 --method lime --granularity word
explain explain_lm_contrast --model "$lm" --prompt "The cat sat on the" --contrast "#5,#9" --method input_x_gradient --method shapley_sampling:n_permutations=4
explain explain_lm_eval --model "$lm" --prompt "Tom had a red ball" --method integrated_gradients:n_steps=16 --evaluate
explain explain_sentiment --model "$sent" --prompt "a warm and wonderful film" --target positive --method integrated_gradients --method occlusion
printf 'text\nOnce upon a time\nLily liked to play\nThe dog ran fast\n' > "$work/texts.csv"
if "$cli" evaluate --model "$lm" --data "$work/texts.csv" --text-column text --method integrated_gradients:n_steps=8 --method occlusion --bootstrap 50 --decoys --out "$work/ev" --no-progress > /dev/null 2> "$work/ev.err"; then
  strip "$work/ev/table.json" "$out/evaluate_table.json"; else echo "failed" > "$out/evaluate.failed"; fi
printf 'text,label\n' > "$work/sent.csv"
for i in 1 2 3 4 5 6 7 8 9 10; do printf '"a good film %d",pos\n"a bad film %d",neg\n"great acting %d",pos\n"awful plot %d",neg\n' $i $i $i $i >> "$work/sent.csv"; done
for s in linear tree gam; do
  if "$cli" distill --teacher "$sent" --data "$work/sent.csv" --text-column text --student $s --out "$work/d_$s" --seed 1 > /dev/null 2> "$work/d_$s.err"; then
    strip "$work/d_$s/report.json" "$out/distill_$s.json"; else echo "exit $? $(tail -1 "$work/d_$s.err")" > "$out/distill_$s.failed"; fi
done
pima=$shared/data/medical/pima_diabetes2_na.csv
if [ -f "$pima" ]; then
  for s in linear tree gam; do
    if "$cli" distill --teacher mlp --data "$pima" --label diabetes --student $s --out "$work/p_$s" --seed 1 > /dev/null 2> "$work/p_$s.err"; then
      strip "$work/p_$s/report.json" "$out/distill_pima_$s.json"; else echo "exit $? $(tail -1 "$work/p_$s.err")" > "$out/distill_pima_$s.failed"; fi
  done
fi
sed -i "s#$work#WORK#g; s#$shared#SHARED#g; s#$src#SRC#g" "$out"/*
ls "$out" | wc -l
