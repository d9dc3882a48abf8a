#!/usr/bin/env bash
# The main job end to end on the sample model: installs what it needs, builds, fetches
# SmolLM2-135M-Instruct, then runs what lftf-patch can do on it. Work files go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
model=$(samples/fetch-model.sh)
swift build -c release
bin=.build/release/lftf-patch
mkdir -p out
echo "== inspect"; $bin inspect "$model" | head -20
