#!/bin/bash
# record_cli_outputs.sh CLI OUTDIR: runs a fixed set of explain --json, evaluate and generate
# commands (CLI and OUTDIR absolute paths) and keeps their files, stdout, stderr and exit codes.
# Record with the CLI before a change and after it, then: compare_cli_outputs.sh BEFORE AFTER.
set -u
CLI=$1; OUT=$2
REPO=$(cd "$(dirname "$0")/.." && pwd)
S=${CANDOR_SHARED:-$REPO/../shared}/models/stories260K
LM=$REPO/models/builtin/lm
SENT=$REPO/models/builtin/sentiment
rm -rf $OUT; mkdir -p $OUT/data
cd $OUT
python3 - <<'PY'
import json
texts = ["Once upon a time, there was a little girl named Lily.",
 "Tom had a big red ball. He liked to play with it in the park.",
 "The sun was hot and the cat wanted to sleep.",
 "One day, a bird flew to the tree and sang a song.",
 "Mom made a cake for the party and everyone was happy.",
 "The dog ran fast to catch the stick."]
with open("data/texts.jsonl","w") as f:
  for t in texts: f.write(json.dumps({"text": t}) + "\n")
with open("data/bad.jsonl","w") as f:
  f.write(json.dumps({"text": texts[0]}) + "\n")
  f.write(json.dumps({"text": "   "}) + "\n")
  f.write("{not json\n")
  f.write(json.dumps({"other": 1}) + "\n")
  f.write(json.dumps({"text": texts[1]}) + "\n")
with open("data/sent.csv","w") as f:
  f.write("text\nI loved this movie it was great\nterrible and boring film\n")
PY
run() {  # name, args...
  local name=$1; shift
  "$CLI" "$@" > $name.stdout 2> $name.stderr
  echo $? > $name.rc
}
run e1 explain --model $LM -p 'Once upon a time' --generate 4 --granularity word --no-progress \
  --method integrated_gradients:n_steps=8 --method occlusion --method logit_lens --json e1.json
run e2 explain --model $S -p 'Once upon a' --target time --no-progress --json e2.json
run e3 explain --model $S -p 'Lily saw a' --contrast 'big,little' --method occlusion \
  --method integrated_gradients:n_steps=4 --consensus --evaluate --no-progress --json e3.json
run e4 explain --model $SENT -p 'I loved this movie, it was great' --target positive \
  --method occlusion --method input_x_gradient --consensus --no-progress --json e4.json
run e5 explain --model $LM -p 'Tom had a big red ball. He liked it. The end' --target-function entropy \
  --baseline zero --granularity sentence --method occlusion --no-progress --json e5.json --threads 1
run e6 explain --model $S -p hi --method integrated_gradient
run e7 explain --model $S -p hi --target 'xyzzy plugh'
run e8 explain --model $S -p hi --contrast big
run e9 explain --model $SENT -p 'good' --generate 2
run e10 explain --model $LM -p 'Once' --target '#5' --method shapley_sampling:n_permutations=4 --no-progress --json e10.json --html e10.html
run v1 evaluate --model $S --data data/texts.jsonl --method occlusion --method integrated_gradients:n_steps=4 \
  --metric faithfulness --metric sensitivity --sensitivity-samples 1 --max-tokens 12 --curve-points 5 \
  --bootstrap 200 --decoys --no-progress --out v1
run v2 evaluate --model $LM --data data/texts.jsonl --method occlusion --limit 3 \
  --attack substitution:n_candidates=2,n_rounds=1 --metric comprehensiveness --bootstrap 50 --no-progress --out v2
run v3 evaluate --model $S --data data/texts.jsonl --method occlusion --generate 3 --limit 4 \
  --metric comprehensiveness --metric deletion --bootstrap 50 --no-progress --out v3
run v4 evaluate --model $LM --data data/bad.jsonl --method occlusion --on-error skip --metric sufficiency \
  --bootstrap 20 --no-progress --out v4
run v5 evaluate --model $LM --data data/bad.jsonl --method occlusion --metric sufficiency --no-progress --out v5
run v6 evaluate --model $SENT --data data/sent.csv --method occlusion --method input_x_gradient --bootstrap 20 \
  --removal delete --no-progress --out v6
# resumption: a finished run cut back to two examples and a partial line, then rerun
run v7a evaluate --model $LM --data data/texts.jsonl --method occlusion --method input_x_gradient --decoys \
  --metric faithfulness --bootstrap 30 --max-tokens 10 --no-progress --out v7
head -n 2 v7/examples.jsonl > v7/x; printf '{"line": 3, "meth' >> v7/x; mv v7/x v7/examples.jsonl
rm v7/table.json v7/table.md v7/report.html
run v7b evaluate --model $LM --data data/texts.jsonl --method occlusion --method input_x_gradient --decoys \
  --metric faithfulness --bootstrap 30 --max-tokens 10 --no-progress --out v7
run v7c evaluate --model $LM --data data/texts.jsonl --method occlusion --decoys \
  --metric faithfulness --bootstrap 30 --max-tokens 10 --no-progress --out v7
run v8 evaluate --model $S --data data/texts.jsonl --max-tokens 1 --out v8
run g1 generate --model $LM -p 'Once upon a time' -n 20 --temperature 0.8 --seed 3 --json
run g2 generate --model $S -p 'Tom' -n 30
run g3 generate --model $S -n 0
