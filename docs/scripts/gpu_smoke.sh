#!/usr/bin/env bash
# The GPU smoke of issue 24, in one script (a lent device gives 15 minutes in all: run it first).
#   bash docs/scripts/gpu_smoke.sh [OUT]      # OUT: where the logs and the table go (default $OUT or gpu_smoke)
# 1. tools/doctor.py (environment, training clips/s per precision, loader, bottleneck)
# 2. train.py on the demo (tiny, 1 epoch of 20 steps): fp32, bf16, fp16, bf16+channels_last, compile
# 3. torchrun with NCCL through a validation when >= 2 GPUs are visible (NCCL needs one GPU per rank)
# 4. test.py 2x3 views, export.py (ONNX parity on the CPU with the PyTorch reference on the GPU)
# 5. training clips/s of TSN / TSM / TAM / ACTION ResNet-50 8f 224 in bf16 + channels_last (doctor.py)
# Each command is bounded; a failure is recorded and the rest still run. Summary: OUT/summary.md.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-gpu_smoke}}
mkdir -p "$OUT"
PY=".venv/bin/python"
[ -x "$PY" ] || PY="uv run python"
SUMMARY="$OUT/summary.md"
echo "| step | exit | seconds | last line |" > "$SUMMARY"
echo "|---|---:|---:|---|" >> "$SUMMARY"

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local last
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | tr '|' '/' | cut -c1-200)
    echo "| $name | $rc | $((SECONDS - t0)) | $last |" >> "$SUMMARY"
}

TINY=(optim.epochs=1 max_steps_per_epoch=20 workers=4 progress=false device=cuda)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
step doctor 120 $PY tools/doctor.py device=cuda --seconds 3 --json "$OUT/doctor.json"
step train_fp32 120 $PY tools/train.py run_dir="$OUT/runs/fp32" "${TINY[@]}" precision=fp32
step train_bf16 120 $PY tools/train.py run_dir="$OUT/runs/bf16" "${TINY[@]}" precision=bf16
step train_fp16 120 $PY tools/train.py run_dir="$OUT/runs/fp16" "${TINY[@]}" precision=fp16
step train_bf16_cl 120 $PY tools/train.py run_dir="$OUT/runs/bf16_cl" "${TINY[@]}" precision=bf16 channels_last=true
step train_compile 240 $PY tools/train.py run_dir="$OUT/runs/compile" "${TINY[@]}" precision=bf16 compile=true
step resume_fp16 120 $PY tools/train.py run_dir="$OUT/runs/fp32" optim.epochs=2 max_steps_per_epoch=20 workers=4 \
    progress=false device=cuda precision=fp16
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
    step torchrun_nccl 240 $PY -m torch.distributed.run --nproc_per_node 2 tools/train.py run_dir="$OUT/runs/ddp" \
        "${TINY[@]}" precision=bf16 sync_bn=true model.partial_bn=true
else
    echo "| torchrun_nccl | - | 0 | skipped: one GPU (NCCL takes one GPU per rank) |" >> "$SUMMARY"
fi
step test_2x3 120 $PY tools/test.py checkpoint="$OUT/runs/bf16/best.pth" split=val data.test.num_clips=2 \
    data.test.num_crops=3 device=cuda precision=bf16
step export 180 $PY tools/export.py --checkpoint "$OUT/runs/fp32/best.pth" --out "$OUT/model.onnx" --device cuda
step deterministic 120 $PY tools/train.py run_dir="$OUT/runs/det" "${TINY[@]}" deterministic=true
for model in tsn tsm tam action; do
    step "r50_${model}" 150 $PY tools/doctor.py --config-name ssv2 data.root=data/demo/ssv2 data.source=ssv2 \
        model="$model" model.pretrained=null batch_size=16 --precisions bf16+channels_last --seconds 10 --no-loader \
        --json "$OUT/r50_${model}.json"
done
cat "$SUMMARY"
