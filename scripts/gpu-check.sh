#!/usr/bin/env bash
# GPU checks for device 'webgpu' (onnxruntime-node's bundled WebGPU provider), in order of importance:
#   1. the parity suite with every model on the GPU (SD3_DEVICE=webgpu),
#   2. a tiny-random text-to-image through the CLI on the GPU (PNG kept for comparison with the CPU's),
#   3. the full-size benchmark on random weights: GPU at 512² and 1024², then the same machine's CPU at 512².
# Each stage has its own time limit and the script goes on when one fails; logs go to OUTDIR.
#
#   scripts/gpu-check.sh OUTDIR [CHECKPOINT]      (needs node >= 20 and node_modules; a Vulkan loader on Linux)
#   STAGES="parity generate" scripts/gpu-check.sh OUTDIR     (only some stages: parity generate bench cpu)
set -u
STAGES=${STAGES:-parity generate bench cpu}
want() { [[ " $STAGES " == *" $1 "* ]]; }
out=${1:?usage: scripts/gpu-check.sh OUTDIR [CHECKPOINT]}
ckpt=${2:-/tmp/sd3_medium_random.safetensors}
mkdir -p "$out"
tsx=(node --import tsx)
stage() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit} s)"; local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1; echo "== $name: exit $? after $((SECONDS - t0)) s"; }

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
want parity && stage parity-webgpu 150 env SD3_DEVICE=webgpu "${tsx[@]}" test/parity/run.ts --implemented-only
want generate && stage generate-webgpu 45 "${tsx[@]}" src/cli/main.ts generate -m tiny-random --device webgpu -p "a red cube on a table" --steps 4 --seed 7 -o "$out/tiny-webgpu.png" --json
if (want bench || want cpu) && [ ! -f "$ckpt" ]; then stage make-checkpoint 90 "${tsx[@]}" scripts/make-random-checkpoint.ts "$ckpt"; fi
if want bench && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 1000 > "$out/gpu-memory.csv" 2>&1 &
fi
want bench && stage bench-webgpu 220 "${tsx[@]}" bench/run.ts --checkpoint "$ckpt" --device webgpu --size 512,1024 --steps 4 --json
want cpu && stage bench-cpu 120 "${tsx[@]}" bench/run.ts --checkpoint "$ckpt" --device cpu --size 512 --steps 2 --json
kill %1 2> /dev/null
exit 0
