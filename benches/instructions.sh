#!/usr/bin/env bash
# Instructions per request of each hit-path case, under callgrind: stable on
# a noisy machine, unlike wall time. Usage: benches/instructions.sh [cases...]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(prebuilt_bytes strata_hit strata_hit_outer strata_hit_304 strata_hit_private strata_miss_pass)
cargo build -q --release -p strata-bench --example hit_path_profile
out=$(mktemp -d)
ir() {
    valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" \
        target/release/examples/hit_path_profile "$1" "$2" >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out/$1.$2"
}
base=""
printf '%-20s %12s %8s\n' case Ir/request ratio
for case in "${cases[@]}"; do
    small=$(ir "$case" 1000)
    large=$(ir "$case" 21000)
    per=$(( (large - small) / 20000 ))
    [ -n "$base" ] || base=$per
    printf '%-20s %12d %8.3f\n' "$case" "$per" "$(echo "$per / $base" | bc -l)"
done
echo "(profiles in $out)"
