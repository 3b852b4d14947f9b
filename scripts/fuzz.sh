#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one at a time, SECONDS each (default 60), and prints
# the executions per target. Usage:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz from
# crates.io if it is missing. Hangs (-timeout) and memory blow-ups (-rss_limit_mb) count as
# crashes. The committed seeds are in fuzz/corpus/<target>/ (read only); what the fuzzer
# learns goes to fuzz/work/<target>/, crash inputs to fuzz/artifacts/<target>/. A crash
# makes the script exit 1 after all targets ran; turn each into a regression test on
# stable in the crate that owns the parser (see fuzz/README.md).
set -euo pipefail

SECS=${1:-60}
shift || true
if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS < 1)); then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$ROOT/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the workspace forbids unsafe code, so panics, overflow checks (-a), hangs and
# memory blow-ups are what there is to find; builds and runs are several times faster.
# FUZZ_PROFILE=dev builds without optimisation (a cold build took 4m09s of CPU here against
# 11m for the optimised one, at 10-100 times fewer executions per second): what .ci/run uses
# for its smoke run.
if [[ ${FUZZ_PROFILE:-release} == dev ]]; then
    BUILD=(-D -a -s none)
    PROFILE_DIR=debug
else
    BUILD=(-O -a -s none --codegen-units 16)
    PROFILE_DIR=release
fi
OPTS=(-rss_limit_mb=2048 -timeout=10 -max_len=16384 -print_final_stats=1)

nice -n 10 cargo +nightly fuzz build "${BUILD[@]}"
# The binaries are run directly: `cargo fuzz run` would rebuild before each target.
# Where cargo put them (fuzz/target, or wherever CARGO_TARGET_DIR points).
TARGET_DIR=$(cargo +nightly metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="${TARGET_DIR:-target}/$(rustc +nightly -vV | sed -n 's/^host: //p')/$PROFILE_DIR"

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

declare -A execs status
failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
    log="work/$t.log"
    echo "==> fuzz.sh: $t for ${SECS}s"
    # The working corpus comes first: libFuzzer writes new inputs only to the first directory.
    if nice -n 10 "$BIN/$t" "work/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$SECS" "${OPTS[@]}" >"$log" 2>&1; then
        status[$t]=ok
    else
        status[$t]=CRASH
        failed=1
        grep -E "panicked at|ERROR: libFuzzer|Test unit written to" "$log" | head -5 || true
    fi
    execs[$t]=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    echo "    ${status[$t]}: ${execs[$t]:-?} executions (log: fuzz/$log)"
done

echo
printf '%-26s %12s  %s\n' target executions result
for t in "${targets[@]}"; do
    printf '%-26s %12s  %s\n' "$t" "${execs[$t]:-?}" "${status[$t]}"
done
exit "$failed"
