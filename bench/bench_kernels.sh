#!/usr/bin/env bash
# Issue 17's side-by-side kernel benchmark in one command: builds bench_kernels, runs every
# section (forward, KernelSHAP batches of 16, forward + backward, integrated gradients with 50
# points, on stories260K and llama768, 32 and 128 tokens, 1 and 2 threads, against PyTorch eager
# on the same weights, with the value check; the saliency path; the Q4_K / Q8_0 copies against
# float32) and writes the markdown report.
#
#   bench/bench_kernels.sh [--out FILE] [--build DIR] [bench_kernels options...]
#
# FILE defaults to build/bench/kernels.md (DIR: build); progress goes to the terminal. The
# options pass through (e.g. --rounds=3, --models=stories260K, --no-saliency); --rounds=3 is
# the default here. stories260K is read from $CANDOR_SHARED (default ../shared); the PyTorch
# side needs /usr/bin/python3 with python3-torch and is skipped with a message without it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build"
out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --build) build="$2"; shift 2 ;;
    --build=*) build="${1#--build=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || out="$build/bench/kernels.md"
case " ${args[*]-} " in *" --rounds="*) ;; *) args=(--rounds=3 "${args[@]+"${args[@]}"}") ;; esac
export CANDOR_SHARED="${CANDOR_SHARED:-$root/../shared}"

if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target bench_kernels >&2
mkdir -p "$(dirname "$out")"
start=$(date +%s)
{
  echo "<!-- bench/bench_kernels.sh ${args[*]}, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) -->"
  "$build/bench/bench_kernels" "${args[@]}"
  echo
  echo "Run time: $(( $(date +%s) - start )) s (bench_kernels ${args[*]}); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$out.part"
mv "$out.part" "$out"
echo "wrote $out ($(( $(date +%s) - start )) s)" >&2
