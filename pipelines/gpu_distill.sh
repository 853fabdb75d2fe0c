#!/usr/bin/env bash
# Distil the shipped generator into the fast CPU generator on one GPU, in ~10 minutes.
#
#   bash pipelines/gpu_distill.sh WORK [MINUTES]
#
# Run from the repository root, in an environment with animator and a CUDA PyTorch installed,
# with the shared data at ../shared. WORK is a scratch folder (created); MINUTES (default 7) is
# the budget of the real run. Steps:
#   1. the training set: UTKFace prepared into WORK/data (skipped when it is already there);
#   2. a measuring run (150 iterations) gives the iteration rate after warm-up;
#   3. the real run gets as many iterations as fit in MINUTES, with the paper's decay schedule;
#   4. the student and the teacher are evaluated on the same held-out faces (WORK/eval_*).
# The student lands in WORK/run/generator; to ship it, copy that folder to
# animator/assets/fast_model/ with a model card (docs/model_card_template.md), after comparing
# WORK/eval_fast/metrics.md and grid.png with WORK/eval_full/.
set -euo pipefail

WORK=${1:?usage: bash pipelines/gpu_distill.sh WORK [MINUTES]}
MINUTES=${2:-7}
TEACHER=animator/assets/default_model
UTKFACE=../shared/datasets/utkface/UTKFace-aligned-200.tar
# The fast generator: conv_dim 32, 3 residual blocks, 128 px (bench/generator.py sizes it).
STUDENT=(--distill-from "$TEACHER" --g-conv-dim 32 --g-repeat-num 3 --batch-size 25 --device cuda)

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
mkdir -p "$WORK"

if [ ! -f "$WORK/data/manifest.json" ]; then
    mkdir -p "$WORK/utkface"
    tar xf "$UTKFACE" -C "$WORK/utkface"
    animator prepare "$WORK/utkface" -o "$WORK/data" --workers "$(nproc)" -q
fi

animator train "$WORK/data" -o "$WORK/measure" "${STUDENT[@]}" --steps 150 --log-every 50 \
    --eval-every 1000 --sample-every 1000 --overwrite -q
RATE=$(python - "$WORK/measure/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(max(float(r["images_per_s"]) for r in rows if r["images_per_s"]) / 25)  # iterations/s, warm
EOF
)
STEPS=$(python -c "print(int($RATE * 60 * $MINUTES * 0.9))")
echo "measured $RATE iterations/s: the real run gets $STEPS iterations in $MINUTES minutes"

animator train "$WORK/data" -o "$WORK/run" "${STUDENT[@]}" --steps "$STEPS" \
    --max-minutes "$MINUTES" --log-every 200 --eval-every 1000 --sample-every 1000 --overwrite -q

python -m pipelines.evaluate --checkpoint "$WORK/run/generator" --data "$WORK/data" \
    --out "$WORK/eval_fast" --limit 256 --device cuda --overwrite
python -m pipelines.evaluate --data "$WORK/data" --out "$WORK/eval_full" --limit 256 \
    --device cuda --overwrite
