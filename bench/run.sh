#!/bin/sh
# bench/run.sh — build and run weir's benchmarks (what `make bench` runs).
# Every figure is a ratio against a baseline measured in the same run; the
# recorded figures and the machine they came from are in bench/RESULTS.md.
#
#   sh bench/run.sh
#   WEIR_BENCH_ITEMS=N     items per run (default 2000000)
#   WEIR_BENCH_REPS=N      runs per case, the median is reported (default 5)
#   WEIR_BENCH_GO=0        skip the Go baseline
#   B=DIR                  build folder (default build), as for make
#
# POSIX sh (the Makefile runs it with `sh`). Needs make and a C compiler;
# Go is optional and used offline (standard library only).
set -eu

cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
B=${B:-build}
ITEMS=${WEIR_BENCH_ITEMS:-2000000}
REPS=${WEIR_BENCH_REPS:-5}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "weir benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC'), $ncpu CPUs, ${cpu:-unknown CPU}"
# The figures are only as good as the machine is quiet: show what else runs.
if [ -r /proc/loadavg ]; then
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
echo

$MAKE --no-print-directory lib "$B/bench/chan_bench"

# ---- Go baseline: buffered chan, same cases as chan_bench ----------------
# Go's ns/op is per item (one send + one receive): items/s = 1e9 / ns/op.
# The figures go to chan_bench, which prints weir/Go next to its own.
# median_ns NAME FILE: the median ns/op of benchmark NAME's -count runs.
median_ns() {
    awk -v name="$1" '
        $1 ~ ("^" name "(-[0-9]+)?$") {
            for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") print $i
        }' "$2" | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) exit
            if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

go_args=
if [ "${WEIR_BENCH_GO:-1}" != 0 ] && command -v go >/dev/null 2>&1; then
    # Offline and hermetic: no toolchain download, no module proxy, no
    # user GOFLAGS; a private cache when HOME cannot hold one.
    GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOFLAGS='' GO111MODULE=on GOWORK=off
    export GOTOOLCHAIN GOPROXY GOSUMDB GOFLAGS GO111MODULE GOWORK
    if [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; then
        GOCACHE="$tmp/gocache" GOPATH="$tmp/gopath"
        export GOCACHE GOPATH
    fi
    gover=$(go env GOVERSION 2>/dev/null || go version)
    echo
    echo "== Go baseline ($gover, GOMAXPROCS=$ncpu): buffered chan, capacity 1024, $ITEMS items, median of $REPS"
    if (cd bench/go && go test -run '^$' -bench . -benchtime "${ITEMS}x" \
            -count "$REPS") >"$tmp/go.txt" 2>&1; then
        spsc_ns=$(median_ns BenchmarkChanSPSC "$tmp/go.txt")
        mpmc_ns=$(median_ns BenchmarkChanMPMC2x2 "$tmp/go.txt")
        printf '%-26s %12s %16s\n' "go case" "ns/op" "items/s"
        for pair in "spsc 1->1:$spsc_ns" "mpmc 2->2:$mpmc_ns"; do
            label=${pair%%:*} ns=${pair#*:}
            [ -n "$ns" ] || continue
            awk -v l="$label" -v ns="$ns" \
                'BEGIN { printf "%-26s %12.2f %16.0f\n", l, ns, 1e9 / ns }'
        done
        if [ -n "$spsc_ns" ]; then
            go_args="$go_args --go-spsc $(awk -v ns="$spsc_ns" 'BEGIN { printf "%.0f", 1e9 / ns }')"
        fi
        if [ -n "$mpmc_ns" ]; then
            go_args="$go_args --go-mpmc $(awk -v ns="$mpmc_ns" 'BEGIN { printf "%.0f", 1e9 / ns }')"
        fi
    else
        echo "go benchmark failed (weir/Go ratios skipped):"
        sed 's/^/  /' "$tmp/go.txt"
    fi
else
    echo
    echo "== Go baseline skipped (no go on PATH, or WEIR_BENCH_GO=0)"
fi

# ---- channels: weir_chan vs a mutex+condvar queue (and Go, above) ---------
echo
echo "== $B/bench/chan_bench --items $ITEMS --reps $REPS$go_args"
# shellcheck disable=SC2086 # go_args is a list of words on purpose
"$B/bench/chan_bench" --items "$ITEMS" --reps "$REPS" $go_args

# ---- launching a run's workers: OpenMP team vs one pthread per stage -------
$MAKE --no-print-directory "$B/bench/launch_bench" >/dev/null
echo
echo "== $B/bench/launch_bench 1000"
"$B/bench/launch_bench" 1000

# Longer benchmarks have scripts of their own: bench/sort_rss.sh (sort with
# spill), bench/peers.sh (weir vs DuckDB, Miller, …), bench/longrun.sh.
