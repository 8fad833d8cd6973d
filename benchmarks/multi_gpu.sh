#!/usr/bin/env bash
# Two GPUs vs one (issue: multi-GPU training and sampling). `bash benchmarks/multi_gpu.sh cuda` on a 2-GPU machine;
# `bash benchmarks/multi_gpu.sh cpu` runs the same path with gloo on the CPU at toy sizes (a smoke test).
set -euo pipefail
mode="${1:-cuda}"
py="${PYTHON:-python3}"
work="${WORK:-$(mktemp -d)}"
b="benchmarks/multi_gpu.py"
if [ "$mode" = cuda ]; then
  d0=cuda:0 d1=cuda:1 dev=cuda extra=(--compile)
  sizes=(--images 4096 --res 32 --size nested_small --batch 128 --steps "${STEPS:-200}")
  n="${SAMPLES:-4096}" half=$((n / 2))
else
  d0=cpu d1=cpu dev=cpu extra=() sizes=(--images 64 --res 16 --size nested_tiny --batch 8 --steps 30 --precision fp32)
  n=16 half=8
fi
"$py" $b prepare --dir "$work" "${sizes[@]}"
"$py" -m torch.distributed.run --standalone --nproc_per_node 1 $b train --dir "$work" --name g1 --device $dev \
    "${sizes[@]}" "${extra[@]}"
"$py" -m torch.distributed.run --standalone --nproc_per_node 2 $b train --dir "$work" --name g2 --device $dev \
    "${sizes[@]}" "${extra[@]}"
common=(--dir "$work" --name g2 "${sizes[@]}" --sample-steps "${SAMPLE_STEPS:-50}")
"$py" $b sample "${common[@]}" --device $d0 --range 0:$n --out "$work/s_single.npz"
"$py" $b sample "${common[@]}" --device $d0 --range 0:$half --out "$work/s_half0.npz" &
"$py" $b sample "${common[@]}" --device $d1 --range $half:$n --out "$work/s_half1.npz" &
wait
"$py" - "$work" <<'PY'
import sys, numpy as np
from metrics.io import load_npz, save_npz_atomic
d = load_npz(f"{sys.argv[1]}/data.npz")
save_npz_atomic(f"{sys.argv[1]}/real.npz", x=d["x"], labels=d["labels"])
PY
"$py" $b features --dir "$work" --device $d0 --input "$work/real.npz" --out "$work/f_real.npz"
"$py" $b features --dir "$work" --device $d0 --input "$work/s_single.npz" --out "$work/f_single.npz"
"$py" $b features --dir "$work" --device $d0 --input "$work/s_half0.npz" --out "$work/f_half0.npz" &
"$py" $b features --dir "$work" --device $d1 --input "$work/s_half1.npz" --out "$work/f_half1.npz" &
wait
"$py" $b report --dir "$work" "${sizes[@]}"
