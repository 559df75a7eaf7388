#!/usr/bin/env bash
# The GPU path, checked on a machine with CUDA (`make gpu-check`, or this script by hand on a
# CUDA machine that has a built binary): `alignlab bench --device cuda` (every row in fp32 and
# bf16), then the quick scenario with `--device cuda` (the same run as `make run`) in fp32 and
# in bf16, each with its wall time, and `alignlab equivalence` of the two.
#
# Usage: scripts/gpu-check.sh [ALIGNLAB_BINARY] [OUT_DIR]
#
# The binary loads libtorch_cuda.so at run time (src/device.rs): from the libtorch it was built
# with when that exists on this machine, else from LD_LIBRARY_PATH. Where it was built on
# another machine, this script points LD_LIBRARY_PATH at this machine's torch 2.11.0 (the
# Python package, found with python3), which must match the version the binary was built with.
set -euo pipefail
BIN=${1:-./target/release/alignlab}
OUT=${2:-gpu-check}
mkdir -p "$OUT"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU visible here (nvidia-smi -L fails); fix: run this on a CUDA machine" >&2
    exit 1
fi
nvidia-smi -L | tee "$OUT/gpu.txt"

# This machine's torch libraries, for the libraries the binary needs.
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
TORCH_VERSION=$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ -n "$TORCH_LIB" ]; then
    NV=$(dirname "$(dirname "$TORCH_LIB")")/nvidia
    EXTRA=$(find "$NV" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':' || true)
    export LD_LIBRARY_PATH="$TORCH_LIB:${EXTRA}${LD_LIBRARY_PATH:-}"
    echo "gpu-check: torch $TORCH_VERSION libraries from $TORCH_LIB" | tee -a "$OUT/gpu.txt"
fi
case "$TORCH_VERSION" in
    2.11.0*|"") ;;
    *) echo "gpu-check: this machine's torch is $TORCH_VERSION, the binary is built against 2.11.0; fix: pip install torch==2.11.0" >&2; exit 1 ;;
esac
if ldd "$BIN" | grep -q "not found"; then
    ldd "$BIN" | grep "not found" >&2
    echo "gpu-check: $BIN misses libraries above; fix: install torch==2.11.0 for python3 here or set LD_LIBRARY_PATH to its lib folder" >&2
    exit 1
fi

echo "== alignlab bench --device cuda"
start=$(date +%s%N)
"$BIN" bench --device cuda --quick | tee "$OUT/bench.txt"
echo "bench wall $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$OUT/bench.txt"

for p in fp32 bf16; do
    echo "== the quick scenario, --device cuda --precision $p"
    start=$(date +%s%N)
    "$BIN" run scenarios/sentiment.toml --device cuda --precision "$p" --quiet --runs "$OUT/runs" --results "$OUT/results-$p" | tee "$OUT/run-$p.txt"
    echo "run wall $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$OUT/run-$p.txt"
done
"$BIN" equivalence "$OUT/results-fp32/sentiment" "$OUT/results-bf16/sentiment" | tee "$OUT/equivalence.txt"
