#!/usr/bin/env bash
# Crates compiled and wall time of the README's two commands, on a fresh
# clone with an empty target directory (the registry cache is kept: nothing
# is downloaded). Usage: benches/first_build.sh [REV...] (default HEAD).
# Each revision is cloned once; its demo build and its test build each
# start from an empty target directory.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
revs=("$@")
[ ${#revs[@]} -gt 0 ] || revs=(HEAD)
work=$(mktemp -d)
printf '%-10s %-6s %8s %8s  %s\n' rev command crates seconds "cargo ..."
for rev in "${revs[@]}"; do
    dir="$work/$rev"
    git clone -q "$repo" "$dir"
    git -C "$dir" checkout -q "$rev"
    # The README's test command (without running the tests): the bench
    # packages are left out from when they exist.
    if [ -f "$dir/benches/Cargo.toml" ]; then
        test_cmd=(test --workspace --exclude strata-bench --exclude strata-compare --no-run)
    else
        test_cmd=(test --workspace --no-run)
    fi
    for what in demo test; do
        case $what in
            demo) cmd=(build --release --example thebot) ;;
            test) cmd=("${test_cmd[@]}") ;;
        esac
        target="$work/target-$rev-$what"
        start=$(date +%s.%N)
        (cd "$dir" && CARGO_TARGET_DIR="$target" cargo "${cmd[@]}") >"$work/$rev-$what.log" 2>&1
        end=$(date +%s.%N)
        grep -o 'Compiling [A-Za-z0-9_-]*' "$work/$rev-$what.log" | awk '{print $2}' | sort >"$work/$rev-$what.crates"
        printf '%-10s %-6s %8d %8.0f  %s\n' "$rev" "$what" "$(wc -l <"$work/$rev-$what.crates")" \
            "$(echo "$end - $start" | bc -l)" "${cmd[*]}"
        rm -rf "$target"
    done
done
echo "(crate lists and logs in $work)"
