#!/usr/bin/env bash
# The float16 / WebGPU checks of issue #18, for a machine with a GPU, in one go (about 8 minutes on an H100/H200
# class GPU; each stage has its own time limit and the script goes on when one fails). In order of importance:
#   probe      WebGPU adapter, shader-f16, and whether outputs can stay on the GPU (bench/gpu/probe-io.ts)
#   parity     npm run test:webgpu: tiny mmdit/vae/sampler fixtures on the GPU, float32 and float16; and the
#              sampler cases' float16 vs float32 images in 8-bit codes (bench/gpu/float16-images.ts)
#   bench      bench/run.ts --device webgpu, float32 and float16, at 512² and 1024² (4 steps each, one process each)
#   generate   sd3 generate end to end (load included), 28 steps: 512² float32 and float16 (same seed, and how far
#              the two images are apart), 1024² float16
#   memory     bench:gpu-memory float32 vs float16 at 1024²: VAE decode and one MMDiT forward (batch 2)
# Every stage's GPU memory peak (nvidia-smi every 200 ms) goes to OUTDIR/summary.txt, beside each stage's log.
#
#   bench/gpu/check.sh OUTDIR [CHECKPOINT]       (node >= 20, node_modules, a Vulkan loader and GPU driver)
#   STAGES="parity bench" bench/gpu/check.sh OUTDIR   (only some stages)
#
# CHECKPOINT defaults to /tmp/sd3_medium_random.safetensors, made when missing (random weights, about 60 s).
set -u
STAGES=${STAGES:-probe parity bench generate memory}
want() { [[ " $STAGES " == *" $1 "* ]]; }
out=$(realpath -m "${1:?usage: bench/gpu/check.sh OUTDIR [CHECKPOINT]}")
ckpt=$(realpath -m "${2:-/tmp/sd3_medium_random.safetensors}")
cd "$(dirname "$0")/../.."
mkdir -p "$out"
summary=$out/summary.txt
tsx=(node --import tsx)
has_smi() { command -v nvidia-smi > /dev/null; }

# stage NAME LIMIT_S COMMAND...: runs it with a time limit, logs to OUTDIR/NAME.log, records exit, time, GPU peak.
stage() {
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit} s)"
  local watch=''
  if has_smi; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/$name.gpumem" 2> /dev/null &
    watch=$!
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1
  local rc=$?
  local secs=$((SECONDS - t0)) peak='-'
  if [ -n "$watch" ]; then
    kill "$watch" 2> /dev/null; wait "$watch" 2> /dev/null
    peak=$(awk 'BEGIN { m = 0 } { if ($1 + 0 > m) m = $1 + 0 } END { print m }' "$out/$name.gpumem")
  fi
  echo "== $name: exit $rc after $secs s, GPU memory peak $peak MiB" | tee -a "$summary"
}

{ date -u; lscpu | grep 'Model name'; has_smi && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } | tee "$summary"

if want probe; then
  stage probe 60 "${tsx[@]}" bench/gpu/probe-io.ts
fi
if want parity; then
  stage parity 120 npm run test:webgpu
  stage float16-images 60 "${tsx[@]}" bench/gpu/float16-images.ts --device webgpu
fi

if (want bench || want generate || want memory) && [ ! -f "$ckpt" ]; then
  stage make-checkpoint 120 "${tsx[@]}" scripts/make-random-checkpoint.ts "$ckpt"
fi

if want bench; then
  for size in 512 1024; do
    for mode in fp32 fp16; do
      stage "bench-$mode-$size" 100 "${tsx[@]}" bench/run.ts --checkpoint "$ckpt" --device webgpu --mode "$mode" --size "$size" --steps 4 --json
    done
  done
fi

if want generate; then
  gen() { local name=$1; shift
    stage "generate-$name" 100 "${tsx[@]}" src/cli/main.ts generate -m "$ckpt" --device webgpu -p "a lighthouse on a cliff at dusk" --steps 28 --seed 7 -o "$out/$name.png" --json "$@"; }
  gen fp32-512 --width 512 --height 512
  gen fp16-512 --width 512 --height 512 --fp16
  gen fp16-1024 --width 1024 --height 1024 --fp16
  [ -f "$out/fp32-512.png" ] && [ -f "$out/fp16-512.png" ] && {
    echo -n "512² float16 vs float32 image, 8-bit codes: "; "${tsx[@]}" bench/gpu/compare-png.ts "$out/fp32-512.png" "$out/fp16-512.png"; } | tee -a "$summary"
fi

if want memory; then
  for part in vae mmdit; do
    for dtype in float32 float16; do
      stage "memory-$part-$dtype" 60 "${tsx[@]}" bench/gpu-memory.ts --checkpoint "$ckpt" --part "$part" --size 1024 --cache simple --dtype "$dtype"
    done
  done
fi

# One line per bench run (its JSON), for BENCHMARKS.md.
for f in "$out"/bench-*.log; do [ -f "$f" ] && echo "$(basename "$f" .log): $(grep '^{' "$f" | tail -1)"; done | tee -a "$summary"
exit 0
