#!/usr/bin/env bash
# Long run: 10 GiB of generated trips, formatted as CSV and parsed again,
# through a filter and a group, with the process's resident memory sampled
# every second. Memory is bounded by construction (channels × batches, the
# group's table), so RSS must stay flat however long the input: after a
# warm-up, the second half of the run holds no more than the first.
#
#   bench/longrun.sh [ROWS]        default 115000000 rows ≈ 10 GiB of CSV
#
# Env: WEIR (binary, default build/weir), OUT (folder for the samples,
# default build/longrun), MAX_LOAD (wait until the 1-minute load average is
# below it, default 1.5; FORCE=1 runs anyway). Prints the figures that go
# into bench/RESULTS.md ("Long run"); exits 1 if RSS grew.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
WEIR=${WEIR:-$top/build/weir}
ROWS=${1:-115000000}
OUT=${OUT:-$top/build/longrun}
MAX_LOAD=${MAX_LOAD:-1.5}
[ -x "$WEIR" ] || { echo "longrun: no weir binary at $WEIR (run make)"; exit 1; }
mkdir -p "$OUT"

SPEC="gen(rows=$ROWS) | to_csv() | csv() | filter(fare > 10)
| group(by=[payment, passenger_count], n=count(), total=sum(fare))"

load() { cut -d' ' -f1 /proc/loadavg; }
quiet() { awk -v l="$(load)" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; }
if [ "${FORCE:-0}" != 1 ]; then
    waited=0
    until quiet; do
        [ $waited = 0 ] && echo "longrun: load $(load) is not below $MAX_LOAD; waiting (FORCE=1 to run anyway)"
        sleep 30
        waited=$((waited + 30))
        [ $waited -lt 3600 ] || { echo "longrun: still busy after an hour"; exit 2; }
    done
fi

echo "weir run -e '$(echo "$SPEC" | tr '\n' ' ')' --stats"
echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, load $(load) at start"
start=$(date +%s.%N)
"$WEIR" run -e "$SPEC" --stats >"$OUT/result.csv" 2>"$OUT/stats.txt" &
pid=$!
# One sample a second: seconds since start, VmRSS in KiB.
echo "seconds,rss_kib" >"$OUT/rss.csv"
t=0
while kill -0 $pid 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status 2>/dev/null)
    [ -n "$rss" ] && echo "$t,$rss" >>"$OUT/rss.csv"
    sleep 1
    t=$((t + 1))
done
wait $pid
rc=$?
end=$(date +%s.%N)
[ $rc = 0 ] || { echo "longrun: the run failed (exit $rc):"; cat "$OUT/stats.txt"; exit 1; }

cat "$OUT/stats.txt"
# Warm-up: the first 10% of the samples (at least 5 s). Flat: the peak of
# the second half of the run is within 10% (or 16 MiB) of the peak of the
# first half. Memory is bounded by construction (weir explain estimates
# the channels' share), but reaching that bound can take a while: the
# queues fill up when a stage is starved of CPU (other work on the
# machine), and freed batches stay with malloc. A leak grows with the
# input and does not level off.
awk -F, -v secs="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" -v rows="$ROWS" '
    NR > 1 { rss[n++] = $2 }
    function median(a, from, to,    k, m, t, i, j) {
        m = 0
        for (i = from; i < to; i++) t[m++] = a[i]
        for (i = 1; i < m; i++) { k = t[i]; for (j = i - 1; j >= 0 && t[j] > k; j--) t[j + 1] = t[j]; t[j + 1] = k }
        return t[int(m / 2)]
    }
    function peak(a, from, to,    i, p) {
        p = 0
        for (i = from; i < to; i++) if (a[i] > p) p = a[i]
        return p
    }
    END {
        if (n < 10) { print "longrun: too few samples (" n ")"; exit 1 }
        w = int(n / 10); if (w < 5) w = 5
        lo = 1e18
        for (i = w; i < n; i++) if (rss[i] < lo) lo = rss[i]
        med = median(rss, w, n)
        mid = int((w + n) / 2)
        p1 = peak(rss, w, mid); p2 = peak(rss, mid, n)
        q = int((n - w) / 5); if (q < 1) q = 1
        printf "rows %d in %.1f s (%.2f M rows/s); %d RSS samples, warm-up %d s\n", rows, secs, rows / secs / 1e6, n, w
        printf "RSS after warm-up: min %.1f MiB, median %.1f MiB, max %.1f MiB\n", lo / 1024, med / 1024, (p1 > p2 ? p1 : p2) / 1024
        printf "median RSS, first fifth %.1f MiB, last fifth %.1f MiB\n", median(rss, w, w + q) / 1024, median(rss, n - q, n) / 1024
        printf "peak RSS, first half %.1f MiB, second half %.1f MiB: %+.1f MiB\n", p1 / 1024, p2 / 1024, (p2 - p1) / 1024
        flat = p2 - p1 <= p1 * 0.10 || p2 - p1 <= 16 * 1024
        print (flat ? "RSS is flat" : "RSS GREW")
        exit !flat
    }' "$OUT/rss.csv"
status=$?
echo "samples: $OUT/rss.csv; result: $OUT/result.csv"
exit $status
