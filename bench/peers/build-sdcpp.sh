#!/usr/bin/env bash
# Builds stable-diffusion.cpp's CLI (CPU only) from a source checkout, for `npm run bench:peers`.
#
#   SDCPP_SRC=/path/to/stable-diffusion.cpp bench/peers/build-sdcpp.sh
#
# SDCPP_SRC must be a checkout with its ggml submodule (git clone --recursive, or git submodule update --init ggml).
# The build goes to $SDCPP_BUILD (default /tmp/sdcpp-build-$USER), niced, with $SDCPP_JOBS jobs (default 2).
# Prints the path of the sd-cli binary on its last line. Nothing of the checkout or the build enters this repo.
set -euo pipefail
src=${SDCPP_SRC:-}
if [[ -z "$src" ]]; then
  echo "SDCPP_SRC is not set: no stable-diffusion.cpp checkout to build (skipping that peer)" >&2
  exit 3
fi
if [[ ! -f "$src/CMakeLists.txt" || ! -d "$src/src" ]]; then
  echo "SDCPP_SRC=$src is not a stable-diffusion.cpp checkout (no CMakeLists.txt and src/)" >&2
  exit 3
fi
if [[ ! -f "$src/ggml/CMakeLists.txt" ]]; then
  echo "SDCPP_SRC=$src has no ggml submodule: run 'git submodule update --init ggml' there" >&2
  exit 3
fi
build=${SDCPP_BUILD:-/tmp/sdcpp-build-${USER:-$(id -u)}}
jobs=${SDCPP_JOBS:-2}
mkdir -p "$build"
# GGML_NATIVE: the kernels for this CPU's instruction set (AVX2/AVX-512/VNNI/BF16/AMX as present).
nice -n 10 cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DSD_WEBP=OFF -DSD_WEBM=OFF >&2
nice -n 10 cmake --build "$build" --config Release -j "$jobs" --target sd-cli >&2
bin=$(find "$build" -type f -name sd-cli -perm -u+x | head -n 1)
if [[ -z "$bin" ]]; then echo "built, but no sd-cli binary under $build" >&2; exit 1; fi
echo "$bin"
