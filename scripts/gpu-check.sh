#!/usr/bin/env bash
# GPU checks for device 'webgpu' (onnxruntime-node's bundled WebGPU provider), in order of importance:
#   1. the parity suite with every model on the GPU (SD3_DEVICE=webgpu),
#   2. a tiny-random text-to-image through the CLI on the GPU (PNG kept for comparison with the CPU's),
#   3. the full-size benchmark on random weights: GPU at 512² and 1024², then the same machine's CPU at 512².
# Each stage has its own time limit and the script goes on when one fails; logs go to OUTDIR.
#
#   scripts/gpu-check.sh OUTDIR [CHECKPOINT]      (needs node >= 20 and node_modules; a Vulkan loader on Linux)
set -u
out=${1:?usage: scripts/gpu-check.sh OUTDIR [CHECKPOINT]}
ckpt=${2:-/tmp/sd3_medium_random.safetensors}
mkdir -p "$out"
tsx=(node --import tsx)
stage() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit} s)"; local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1; echo "== $name: exit $? after $((SECONDS - t0)) s"; }

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
stage parity-webgpu 200 env SD3_DEVICE=webgpu "${tsx[@]}" test/parity/run.ts --implemented-only
stage generate-webgpu 60 "${tsx[@]}" src/cli/main.ts generate -m tiny-random --device webgpu -p "a red cube on a table" --steps 4 --seed 7 -o "$out/tiny-webgpu.png" --json
[ -f "$ckpt" ] || stage make-checkpoint 90 "${tsx[@]}" scripts/make-random-checkpoint.ts "$ckpt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 1000 > "$out/gpu-memory.csv" 2>&1 &
fi
stage bench-webgpu 260 "${tsx[@]}" bench/run.ts --checkpoint "$ckpt" --device webgpu --size 512,1024 --steps 4 --json
stage bench-cpu 200 "${tsx[@]}" bench/run.ts --checkpoint "$ckpt" --device cpu --size 512 --steps 2 --json
kill %1 2> /dev/null
exit 0
