#!/usr/bin/env bash
# Instructions per request of each contender of the compare bench, called in
# process (no sockets), under callgrind: stable on a noisy machine, unlike
# wall time or CPU time. Each case runs at N=1000 and N=21000 requests;
# Ir/request = (Ir(21000) - Ir(1000)) / 20000, which removes setup and
# priming. Ratios are to `ceiling` (no cache, pre-built bytes) and to
# `axum_response_cache_hit`, which are always measured.
#
# Usage: benches/compare/ir.sh [cases...]   (see examples/hit_ir.rs)
# Profiles are kept (printed at the end) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."
all=(ceiling strata_layer_hit strata_outer_hit strata_layer_304 strata_outer_304
    axum_response_cache_hit tower_http_cache_hit http_cache_tower_server_hit
    strata_miss handler_no_cache)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=("${all[@]}")
for must in axum_response_cache_hit ceiling; do
    [[ " ${cases[*]} " == *" $must "* ]] || cases=("$must" "${cases[@]}")
done
small=1000
large=21000
cargo build -q --release -p strata-compare --example hit_ir
bin=target/release/examples/hit_ir
out=$(mktemp -d /tmp/strata-ir.XXXXXX)
ir() {
    if ! valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" \
        "$bin" "$1" "$2" >"$out/$1.$2.log" 2>&1; then
        echo "$1 $2 failed:" >&2
        tail -20 "$out/$1.$2.log" >&2
        exit 1
    fi
    awk '/^summary:/ {print $2}' "$out/$1.$2"
}
declare -A per
for case in "${cases[@]}"; do
    a=$(ir "$case" "$small")
    b=$(ir "$case" "$large")
    per[$case]=$(((b - a) / (large - small)))
done
ceiling=${per[ceiling]}
axum=${per[axum_response_cache_hit]}
printf '%-28s %12s %10s %10s\n' case Ir/request 'x ceiling' 'x axum-rc'
for case in "${cases[@]}"; do
    printf '%-28s %12d %10.2f %10.2f\n' "$case" "${per[$case]}" \
        "$(echo "${per[$case]} / $ceiling" | bc -l)" \
        "$(echo "${per[$case]} / $axum" | bc -l)"
done
echo "(profiles in $out: <case>.$small and <case>.$large; e.g."
echo " callgrind_annotate --inclusive=yes $out/strata_layer_hit.$large)"
