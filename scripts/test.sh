#!/usr/bin/env bash
# The test command: installs what it needs (apt packages, the sample model), then runs the
# whole suite once, in release mode (one build configuration; the engine tests need -O).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
samples/fetch-model.sh >/dev/null
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
