#!/bin/sh
# bench/sort_rss.sh — sort an input ten times larger than its memory budget
# and record wall time and peak RSS (/usr/bin/time -v); then time the
# in-memory sort with OMP_NUM_THREADS=1 and 2. A benchmark, not a test: it
# prints figures (and checks the output), it asserts nothing about speed.
#
#   sh bench/sort_rss.sh
#   WEIR_SORT_MEM=32M          the sort's budget (mem=)
#   WEIR_SORT_ROWS=3500000     generated trips (~93 bytes each: ~325 MB)
#   WEIR_SORT_OMP_ROWS=3000000 rows for the 1- vs 2-thread in-memory sort
#   WEIR_SORT_REPS=3           runs per timing; the median is printed
#   B=DIR                      build folder (default build)
#
# Baselines, in the same run: the same pipeline without sort() (what
# reading, parsing and writing cost in time and memory on their own), and
# for the thread timing, one thread.
set -eu

cd "$(dirname "$0")/.."
B=${B:-build}
MEM=${WEIR_SORT_MEM:-32M}
ROWS=${WEIR_SORT_ROWS:-3500000}
OMP_ROWS=${WEIR_SORT_OMP_ROWS:-3000000}
REPS=${WEIR_SORT_REPS:-3}
WEIR=$PWD/$B/weir

if [ ! -x /usr/bin/time ]; then
    echo "sort_rss: /usr/bin/time is missing (Debian: apt-get install time)" >&2
    exit 1
fi
make --no-print-directory "$B/weir" >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-sort-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$tmp/spill"

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "weir sort benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $ncpu CPUs, ${cpu:-unknown CPU}"
[ -r /proc/loadavg ] && echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# One run under /usr/bin/time -v: "SECONDS KB" on stdout.
timed() { # SPEC [ENV=V…]
    spec=$1
    shift
    env "$@" TMPDIR="$tmp/spill" /usr/bin/time -v "$WEIR" run -e "$spec" 2>"$tmp/time.txt" >/dev/null ||
        { cat "$tmp/time.txt" >&2; exit 1; }
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time.txt" |
           awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time.txt")
    echo "$wall $rss"
}

# The median of REPS runs of timed: "SECONDS KB" (RSS: the largest seen).
median() { # SPEC [ENV=V…]
    i=0
    : >"$tmp/runs"
    while [ $i -lt "$REPS" ]; do
        timed "$@" >>"$tmp/runs"
        i=$((i + 1))
    done
    sort -n "$tmp/runs" | awk -v n="$REPS" '{ w[NR] = $1; if ($2 > r) r = $2 }
        END { print w[int((n + 1) / 2)], r }'
}

# ---- external sort: input ~10x the budget --------------------------------------------
"$WEIR" gen trips --rows "$ROWS" -o "$tmp/in.csv"
in_bytes=$(wc -c <"$tmp/in.csv")
mem_bytes=$(echo "$MEM" | awk '{ n = $0 + 0; u = substr($0, length($0)); if (u == "K") n *= 1024;
    else if (u == "M") n *= 1048576; else if (u == "G") n *= 1073741824; print n }')
echo
echo "input: $ROWS trips, $in_bytes bytes ($(awk -v a="$in_bytes" -v b="$mem_bytes" 'BEGIN { printf "%.1f", a / b }')x mem=\"$MEM\")"

base_spec="read(\"$tmp/in.csv\") | csv() | write(\"$tmp/copy.csv\")"
sort_spec="read(\"$tmp/in.csv\") | csv() | sort(by=[fare], mem=\"$MEM\") | write(\"$tmp/sorted.csv\")"
set -- $(timed "$base_spec")
base_wall=$1 base_rss=$2
# Spill files while it runs: sampled every 0.2 s from the side.
( while :; do ls "$tmp/spill" | grep -c '^weir-sort-' >>"$tmp/spills" || true; sleep 0.2; done ) &
watch=$!
set -- $(timed "$sort_spec")
kill $watch 2>/dev/null || true
wait $watch 2>/dev/null || true
sort_wall=$1 sort_rss=$2
max_spills=$(sort -n "$tmp/spills" | tail -n 1)

# Verify: sorted by fare, ties in input order (ids ascending), every id once.
"$WEIR" run -e "read(\"$tmp/sorted.csv\") | csv() | select(fare, id) | write(\"$tmp/proj.csv\")"
tail -n +2 "$tmp/proj.csv" | LC_ALL=C sort -c -s -t, -k1,1g -k2,2n ||
    { echo "sort_rss: output is NOT sorted (or not stable)"; exit 1; }
n_in=$("$WEIR" run -e "read(\"$tmp/in.csv\") | csv() | count()")
n_out=$("$WEIR" run -e "read(\"$tmp/sorted.csv\") | csv() | count()")
ids_out=$(tail -n +2 "$tmp/proj.csv" | cut -d, -f2 | sort -n | uniq | wc -l)
[ "$n_in" = "$n_out" ] && [ "$ids_out" = "$n_in" ] ||
    { echo "sort_rss: $n_in rows in, $n_out out, $ids_out distinct ids"; exit 1; }
[ -z "$(ls -A "$tmp/spill")" ] || { echo "sort_rss: spill files left behind"; exit 1; }

echo "verified: $n_out rows, sorted by fare, ties in input order, every id once; no spill file left"
echo
printf '%-44s %9s %12s\n' "run" "wall (s)" "peak RSS"
printf '%-44s %9s %9d MB\n' "read | csv | write (baseline)" "$base_wall" $((base_rss / 1024))
printf '%-44s %9s %9d MB\n' "read | csv | sort(mem=$MEM) | write" "$sort_wall" $((sort_rss / 1024))
awk -v bw="$base_wall" -v sw="$sort_wall" -v br="$base_rss" -v sr="$sort_rss" -v m="$mem_bytes" \
    -v sp="$max_spills" 'BEGIN {
    printf "sort/baseline: %.2fx time; RSS above the baseline: %d MB (budget %d MB); up to %d run files at once\n",
        sw / bw, (sr - br) / 1024, m / 1048576, sp }'

# ---- in-memory sort: OpenMP threads ------------------------------------------------
echo
echo "in-memory sort of $OMP_ROWS generated rows (select(id, fare, payment)), median of $REPS:"
gen="gen(rows=$OMP_ROWS) | select(id, fare, payment)"
printf '%-52s %9s %9s\n' "run" "1 thread" "2 threads"
for case in "$gen | discard()" "$gen | sort(by=fare) | discard()" \
            "$gen | sort(by=[payment, fare], desc=[false, true]) | discard()"; do
    set -- $(median "$case" OMP_NUM_THREADS=1)
    t1=$1
    set -- $(median "$case" OMP_NUM_THREADS=2)
    t2=$1
    label=$(echo "$case" | sed "s/^gen(rows=$OMP_ROWS) | select(id, fare, payment) | //")
    printf '%-52s %9s %9s\n' "$label" "$t1" "$t2"
    echo "$t1 $t2" >>"$tmp/omp"
done
awk 'NR == 1 { b1 = $1; b2 = $2 } NR > 1 { printf "sort part (minus the discard baseline), case %d: 1 thread %.2f s, 2 threads %.2f s: %.2fx\n",
    NR - 1, $1 - b1, $2 - b2, ($1 - b1) / ($2 - b2) }' "$tmp/omp"
[ -r /proc/loadavg ] && echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
