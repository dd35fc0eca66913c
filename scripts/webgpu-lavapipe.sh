#!/usr/bin/env bash
# Runs `npm run test:webgpu` on a machine without a GPU, through Mesa's software Vulkan driver (lavapipe, on the
# CPU; slow, tiny fixtures only: about a minute).
#
#   scripts/webgpu-lavapipe.sh [DIR]        DIR: where lavapipe is unpacked (default /opt/lavapipe); extra args
#                                           after DIR go to test:webgpu (e.g. fixture folders)
#
# Dawn (inside onnxruntime-node) needs a Vulkan driver with the *ArrayDynamicIndexing features: Debian 12's own
# Mesa 22.3 lavapipe is refused ("Vulkan shaderUniform*ArrayDynamicIndexing required", then "No supported
# adapters"); Mesa 25 from bookworm-backports is accepted. When DIR holds no driver yet, this unpacks that one
# there (apt-get download + dpkg-deb -x: nothing is installed system-wide; needs bookworm-backports in the apt
# sources and libvulkan1 installed). On other systems, point LVP_ICD at a Mesa >= 23 lvp_icd json instead.
#
# lavapipe's subgroups give wrong results in ORT's WebGPU FlashAttention kernel (what MultiHeadAttention runs;
# 3-13% off depending on LP_NATIVE_VECTOR_WIDTH), while real GPUs pass the parity suite: so this script runs the
# MultiHeadAttention nodes on the CPU (SD3_WEBGPU_HOST_OPS) and everything else on WebGPU.
set -eu
dir=${1:-/opt/lavapipe}
[ $# -gt 0 ] && shift
lib=$dir/root/usr/lib/x86_64-linux-gnu
icd=${LVP_ICD:-$dir/lvp_icd.json}
if [ ! -f "$icd" ]; then
  echo "unpacking Mesa's lavapipe from bookworm-backports into $dir"
  mkdir -p "$dir/debs"
  (cd "$dir/debs" && apt-get download -t bookworm-backports mesa-vulkan-drivers libdrm2 libdrm-amdgpu1)
  for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
  sed "s#\"library_path\": *\"[^\"]*\"#\"library_path\": \"$lib/libvulkan_lvp.so\"#" "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$icd"
fi
export VK_ICD_FILENAMES=$icd
export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export SD3_WEBGPU_HOST_OPS=${SD3_WEBGPU_HOST_OPS-MultiHeadAttention}
cd "$(dirname "$0")/.."
exec nice -n 19 npm run test:webgpu -- "$@"
