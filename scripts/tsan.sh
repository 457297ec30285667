#!/usr/bin/env bash
# Runs the concurrency tests under ThreadSanitizer; exits non-zero on any failure or any
# ThreadSanitizer report. Two builds:
#  1. the tests that need no libtorch (the audit log's, the service's decode scheduler, admission
#     and metrics; cmake/tsan/CMakeLists.txt lists them), a small project of their own in
#     $CANDOR_TSAN_BUILD (default build-tsan);
#  2. the HTTP-level ones (tests/serve/serve_concurrency_test.cpp: parallel clients through the
#     real server, group commit, metrics and policy reloads under load, stop mid-stream), in a
#     second tree of the whole project configured with CANDOR_SANITIZE=thread in
#     $CANDOR_TSAN_BUILD-service (or $CANDOR_TSAN_SERVICE_BUILD), building only tsan_serve_tests (the service and what it links;
#     libtorch itself is not instrumented and runs with one intra-op thread), and candor_serve_tsan, the CLI's
#     `serve` command alone, that tests/serve/serve_signals_test.cpp runs as a real process (SIGHUP, SIGTERM
#     under load, kill -9 and restart; any ThreadSanitizer report in its output fails the test).
# Usage: scripts/tsan.sh [--gtest_filter=...]   (the filter goes to both binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${CANDOR_TSAN_BUILD:-build-tsan}
SERVICE_BUILD=${CANDOR_TSAN_SERVICE_BUILD:-${BUILD}-service}
cmake -S cmake/tsan -B "$BUILD" -G Ninja -DCANDOR_SANITIZE=thread >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"
cmake -S . -B "$SERVICE_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCANDOR_SANITIZE=thread \
  -DCANDOR_BUILD_BENCH=OFF >/dev/null
cmake --build "$SERVICE_BUILD" -j"${JOBS:-2}" --target tsan_serve_tests
# halt_on_error: the first report fails the run; exitcode 66 tells a report from a test failure.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# libtorch's and OpenBLAS's pools (uninstrumented) stay at one thread.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
status=0
run() {
  local log rc
  log=$(mktemp)
  set +e
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  if grep -q "WARNING: ThreadSanitizer" "$log"; then
    echo "tsan.sh: ThreadSanitizer reported a problem in $1 (see above)" >&2
    rc=66
  fi
  rm -f "$log"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}
run "$BUILD/tsan_tests" "$@"
# Only uninstrumented third-party code is suppressed there (each entry justified in the file).
TSAN_OPTIONS="$TSAN_OPTIONS suppressions=$PWD/cmake/tsan/service.supp" \
  run "$SERVICE_BUILD/tests/tsan_serve_tests" "$@"
exit "$status"
