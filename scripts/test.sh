#!/usr/bin/env bash
# The test command: installs what it needs (apt packages, the sample model), then runs the
# whole suite once, in release mode (one build configuration; the engine tests need -O).
# Ends with one summary line, "tests: N passed, F failed, S skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
samples/fetch-model.sh >/dev/null
swift build -c release -Xswiftc -enable-testing --build-tests
log=$(mktemp); trap 'rm -f "$log"' EXIT
set +e
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -n 1)
if [[ $summary =~ Executed\ ([0-9]+)\ tests?,\ with\ (([0-9]+)\ tests?\ skipped\ and\ )?([0-9]+)\ failures? ]]; then
    total=${BASH_REMATCH[1]}; skipped=${BASH_REMATCH[3]:-0}; failed=${BASH_REMATCH[4]}
    echo "tests: $((total - skipped - failed)) passed, $failed failed, $skipped skipped"
else
    echo "tests: 0 passed, 1 failed (no XCTest summary found)"; [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
