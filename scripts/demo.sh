#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct, offline): grade the
# fixture dataset with the paper's prompt, then select the training subset. A second run is
# answered from the cache and makes no model call.
set -euo pipefail
cd "$(dirname "$0")/.."
gasus=${VENV:-.venv}/bin/gasus
out=${DEMO_OUT:-out/demo}
mode=${DEMO_MODE:-expected}
mkdir -p "$out"

echo "== grade: fixtures/mini_alpaca.json with the embedded grader (--mode $mode)"
$gasus grade fixtures/mini_alpaca.json -o "$out/scores.jsonl" --mode "$mode" --summary-json "$out/grade.json"

echo "== select: kept counts per threshold"
$gasus select fixtures/mini_alpaca.json "$out/scores.jsonl" --sweep 1,1.5,2,3,4.5

echo "== select: the 10 best-graded examples, and the random baseline of equal size"
$gasus select fixtures/mini_alpaca.json "$out/scores.jsonl" --top-k 10 -o "$out/kept.json"
$gasus select fixtures/mini_alpaca.json --random 10 --seed 0 -o "$out/random.json"

echo "== agreement of the embedded grader with the fixture's own labels (rows 30-39 are bad)"
python3 - "$out/labels.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(40):
        f.write(json.dumps({"index": i, "keep": i < 30}) + "\n")
PY
$gasus agree "$out/scores.jsonl" "$out/labels.jsonl" --threshold 2 || true

echo "== rerun: every grade comes from the cache"
$gasus grade fixtures/mini_alpaca.json -o "$out/scores.jsonl" --mode "$mode" --summary-json "$out/grade-rerun.json"
cat "$out/grade-rerun.json"; echo

echo "== the whole recipe at toy scale: grade, select + random baseline, train both, answer, judge"
echo "   (the team's toy test sets in fixtures/testsets: nothing beside the clone is needed)"
$gasus run fixtures/smoke_run.toml --summary-json "$out/run.json"
