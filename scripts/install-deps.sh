#!/usr/bin/env bash
# Install the system libraries lftf-patch links (Debian): OpenBLAS (cblas) and zstd.
set -euo pipefail
need=()
for p in libopenblas-dev libzstd-dev pkg-config zstd; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} ..." >&2
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >&2
fi
