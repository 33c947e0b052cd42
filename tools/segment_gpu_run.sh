#!/usr/bin/env bash
# Stage 11's recipe on the kit's fused labels (as real patches and in the synth bank), fitted to one call on a lent
# GPU (docs/segment_experiments.md, "The next run"): unpack the kit (tools/segment_gpu_kit.py), time 30 steps, then
# train as many steps as SECONDS allow, the cosine decay reaching zero at the last one. Writes segment.pt, log.jsonl
# and timing.jsonl to $OUT.
#
#   bash tools/segment_gpu_run.sh KIT SECONDS [DEVICE [TRAIN OPTIONS...]]
#
# DEVICE: cuda (default), or cpu for a dry run; TRAIN OPTIONS override the recipe's, as in this dry run:
#   OUT=runs/dry PYTHON=.venv/bin/python bash tools/segment_gpu_run.sh runs/gpu_kit 20 cpu --patch 64 --batch 1 \
#       --real-per-step 1 --threads 2
# brainkit comes from ./src: run it from a checkout that does not change while it runs (a `git worktree`).
set -euo pipefail
kit=$1 seconds=$2 device=${3:-cuda}
shift $(($# < 3 ? $# : 3))
python=${PYTHON:-python3}
out=${OUT:?set OUT to the folder for the results}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$kit"/whl/*.whl
export PYTHONPATH="$work/site:$PWD/src" PYTHONUNBUFFERED=1
"$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
    "$kit/data.tar.xz" "$work"  # Python's lzma: the machine's image may lack xz
gzip -1 "$work"/labels/*.nii

overrides=("$@")
train() {
    "$python" -m brainkit.cli train segment --data "$work" --real "$work/t1" --real-labels "$work/labels" \
        --label-maps "$work/labels" --real-per-step 4 --batch 4 --patch 128 --mirror 0.5 --device "$device" \
        --threads 8 --bf16 --seed 96 --lr 2e-4 --schedule cosine --quiet "${overrides[@]}" "$@"
}

train -o "$work/timing" --steps 30
steps=$("$python" - "$work/timing/log.jsonl" "$seconds" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
per_step = (records[-1]["seconds"] - records[1]["seconds"]) / (records[-1]["step"] - records[1]["step"])
print(max(1, int(float(sys.argv[2]) / per_step)))
EOF
)
echo "$(date +%T) training $steps steps"
train -o "$work/run" --steps "$steps" --max-minutes "$(awk "BEGIN {print $seconds * 1.1 / 60}")"  # a safety stop
cp "$work/timing/log.jsonl" "$out/timing.jsonl"
cp "$work/run/segment.pt" "$work/run/log.jsonl" "$out/"
