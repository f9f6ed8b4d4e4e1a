#!/usr/bin/env bash
# Builds Warden in release mode and runs the benchmark harness, writing docs/benchmarks.md.
# Usage: bench/run.sh [warden-bench options, e.g. --only crash --crash-trials 50]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p warden -p warden-bench
mkdir -p docs
out=docs/benchmarks.md
tmp=$(mktemp)
target/release/warden-bench "$@" > "$tmp"
{
    echo "# Benchmarks"
    echo
    echo "Measured by \`bench/run.sh\` (the harness is \`bench/src/main.rs\`) on $(date -u +%Y-%m-%d),"
    echo "commit $(git rev-parse --short HEAD), $(nproc) cores, $(uname -sr), release build."
    echo "Real child processes (\`warden misbehave\`), real signals, real SQLite; medians and tails over"
    echo "repeated trials, with a comparison measured side by side in the same run. This machine is"
    echo "shared and noisy: compare ratios, not single numbers."
    echo
    cat "$tmp"
} > "$out"
rm -f "$tmp"
echo "wrote $out"
