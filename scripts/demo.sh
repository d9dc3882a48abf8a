#!/usr/bin/env bash
# The main job end to end on the sample model (SmolLM2-135M-Instruct, Q4_1 GGUF):
# installs what it needs, builds, fetches the model, then
#   create (locate + fine-tune + write the patch) → info → apply (in place, on a copy)
#   → verify → eval before/after → revert → verify, and checks the revert is byte-exact.
# Work files go to out/ (the cached model itself is never modified).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
model=$(samples/fetch-model.sh)
swift build -c release
bin=.build/release/lftf-patch
mkdir -p out
work=out/SmolLM2-135M-Instruct.Q4_1.gguf
cp "$model" "$work"

step() { printf '\n== %s\n' "$*"; }

step "inspect"
$bin inspect "$work" | head -12

step "create: locate the block, fine-tune it, write out/fix.lftfpatch"
$bin create "$work" -o out/fix.lftfpatch --force --chart out/bmi.svg

step "info"
$bin info out/fix.lftfpatch

step "apply (in place, crash-safe)"
$bin apply "$work" out/fix.lftfpatch

step "verify: the checkpoint is now the patched one"
$bin verify "$work" out/fix.lftfpatch

step "eval: the test split, patched model (already applied) vs the cached base"
$bin eval "$model" --patch out/fix.lftfpatch --split test --chart out/eval.svg

step "revert (byte-exact undo)"
$bin revert "$work" out/fix.lftfpatch
$bin verify "$work" out/fix.lftfpatch || true
cmp "$work" "$model" && echo "revert is byte-identical to the base"

printf '\nCharts: out/bmi.svg (block ranking), out/eval.svg (P(he)/P(she) per profession, before/after)\n'
