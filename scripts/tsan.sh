#!/usr/bin/env bash
# Builds the concurrency tests that need no libtorch (the audit log's, the service's decode
# scheduler, admission and metrics; cmake/tsan/CMakeLists.txt lists them) with ThreadSanitizer in build-tsan and runs them; exits non-zero on any failure or
# any ThreadSanitizer report. Usage: scripts/tsan.sh [--gtest_filter=...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${CANDOR_TSAN_BUILD:-build-tsan}
cmake -S cmake/tsan -B "$BUILD" -G Ninja -DCANDOR_SANITIZE=thread >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"
# halt_on_error: the first report fails the run; exitcode 66 tells a report from a test failure.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
log=$(mktemp)
set +e
"$BUILD/tsan_tests" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -q "WARNING: ThreadSanitizer" "$log"; then
  echo "tsan.sh: ThreadSanitizer reported a problem (see above)" >&2
  status=66
fi
rm -f "$log"
exit "$status"
