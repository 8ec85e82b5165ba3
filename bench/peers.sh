#!/usr/bin/env bash
# bench/peers.sh — weir against the tools a user would reach for instead,
# on the same ~1 GB trips CSV, in the same run, with every tool's output
# checked against weir's.
#
#   bash bench/peers.sh            # everything (waits for a quiet machine)
#   ROWS=1000000 bash bench/peers.sh   # a smaller dataset (its own cache)
#
# Tasks (input MB/s = uncompressed input bytes / wall time):
#   T1  count the rows
#   T2  fare > 50 && payment == "card", keep id, fare, tip, write CSV
#   T3  group by payment, passenger_count: count, sum(fare), mean(tip)
#   T4  T2 from .csv.zst to .csv.zst (weir's multi-frame .zst, as zstd()
#       writes it; also the zstd CLI's single frame)
# Peers: Miller, GNU datamash, gawk, sqlite3 (Debian packages, installed
# when missing) and DuckDB (its npm package @duckdb/node-api, driven by
# bench/peers/duckdb.js, installed into bench/node_modules when npm is
# there). A peer whose output disagrees with weir's (bench/peers/check.py)
# is marked "WRONG" and gets no ratio; one that cannot do a task is "n/a".
# The data has quoted commas, quotes and embedded newlines (zone, notes):
# datamash splits on every comma and newline, so it runs T3 only, to show
# that; gawk gets the records back together by quote parity and splits
# fields with FPAT, which is correct for RFC 4180 without CR line ends.
#
# Environment: ROWS (10000000), RUNS (3: weir and DuckDB, median),
# SLOW_RUNS (1: the others), MAXLOAD (1.0: wait until the 1-minute load
# average is below it, up to WAIT_MIN minutes, 30), THREADS (2: DuckDB's),
# GAWK_ALL (0: gawk runs T1 and T2 only; its FPAT splitting takes minutes
# per task on 1 GB), PEERS (1; 0: weir's rows only).
# Output: the table on stdout and in bench/out/peers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
RUNS=${RUNS:-3}
SLOW_RUNS=${SLOW_RUNS:-1}
MAXLOAD=${MAXLOAD:-1.0}
WAIT_MIN=${WAIT_MIN:-30}
THREADS=${THREADS:-2}
W=$ROOT/build/weir
D=$ROOT/bench/data
O=$ROOT/bench/out
mkdir -p "$D" "$O"
suffix=$([ "$ROWS" = 10000000 ] && echo "" || echo ".$ROWS")
CSV=$D/trips$suffix.csv
ZST=$D/trips$suffix.csv.zst
ZST1=$D/trips$suffix.1frame.csv.zst

say() { printf '%s\n' "$*" >&2; }

# ---- build, data, peers ------------------------------------------------------
make -s all >&2
if [ ! -s "$CSV" ]; then
    say "generating $CSV ($ROWS rows)"
    "$W" gen trips --rows "$ROWS" -o "$CSV"
fi
need=""
for p in mlr:miller datamash:datamash gawk:gawk sqlite3:sqlite3 zstd:zstd python3:python3; do
    command -v "${p%%:*}" >/dev/null || need="$need ${p#*:}"
done
[ -x /usr/bin/time ] || need="$need time"
if [ -n "$need" ]; then
    say "installing:$need"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >&2
fi
if [ ! -s "$ZST" ]; then # one frame per 1 MiB read() batch, compressed on every core
    say "compressing $ZST (weir, multi-frame)"
    "$W" run -e "read(\"$CSV\") | zstd() | write(\"$ZST\")"
fi
if [ ! -s "$ZST1" ]; then
    say "compressing $ZST1 (zstd -T$THREADS, one frame)"
    zstd -q -T"$THREADS" -f "$CSV" -o "$ZST1"
fi
HAVE_DUCKDB=0
if command -v npm >/dev/null && command -v node >/dev/null; then
    if [ ! -d bench/node_modules/@duckdb/node-api ]; then
        say "installing @duckdb/node-api into bench/node_modules"
        npm install --no-save --no-package-lock --no-audit --no-fund --prefix bench \
            @duckdb/node-api >&2 || true
    fi
    [ -d bench/node_modules/@duckdb/node-api ] && HAVE_DUCKDB=1
fi

# ---- a quiet machine ---------------------------------------------------------
load() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while awk -v l="$(load)" -v m="$MAXLOAD" 'BEGIN { exit !(l >= m) }'; do
    if [ "$waited" -ge $((WAIT_MIN * 60)) ]; then
        say "load $(load) still >= $MAXLOAD after $WAIT_MIN min: measuring anyway"
        break
    fi
    say "load $(load) >= $MAXLOAD: waiting"
    sleep 20
    waited=$((waited + 20))
done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BYTES=$(stat -c %s "$CSV")
ZBYTES=$(stat -c %s "$ZST")

# ---- measuring ---------------------------------------------------------------
# measure NAME RUNS COMMAND: median wall seconds and the largest peak RSS
# (of the process or any child it waited for: GNU time's %M, KB).
declare -A WALL RSS CPU FAILED
measure() {
    local name=$1 runs=$2 cmd=$3 walls=() cpus=() rss=0 i
    for ((i = 0; i < runs; i++)); do
        if ! /usr/bin/time -f "%e %M %U %S" -o "$O/time" bash -c "$cmd" >"$O/$name.stdout" 2>"$O/$name.stderr"; then
            say "$name failed: $(tail -3 "$O/$name.stderr")"
            WALL[$name]=fail
            FAILED[$name]=$(head -1 "$O/$name.stderr" | tr '|' ' ' | cut -c1-90)
            return
        fi
        read -r w m u sy <"$O/time"
        walls+=("$w")
        cpus+=("$(awk -v u="$u" -v s="$sy" 'BEGIN { print u + s }')")
        [ "$m" -gt "$rss" ] && rss=$m
    done
    WALL[$name]=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    CPU[$name]=$(printf '%s\n' "${cpus[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    RSS[$name]=$rss
    say "$(printf '%-22s %8s s %8s cpu s %8s MB' "$name" "${WALL[$name]}" "${CPU[$name]}" "$((rss / 1024))")"
}

F='fare > 50 && payment == "card"'
G='group(by=[payment, passenger_count], n=count(), total=sum(fare), avg_tip=mean(tip))'
T2W="filter($F) | select(id, fare, tip)"
wr() { printf '%s run -e %q' "$W" "$1"; }

# weir
measure weir_T1 "$RUNS" "$(wr "read(\"$CSV\") | csv() | count()") > $O/weir_T1.out"
measure weir_T2 "$RUNS" "$(wr "read(\"$CSV\") | csv() | $T2W | write(\"$O/weir_T2.csv\")")"
measure weir_T3 "$RUNS" "$(wr "read(\"$CSV\") | csv() | $G | write(\"$O/weir_T3.csv\")")"
for t in T2 T3; do [ ! -s "$O/weir_$t.csv" ] || cp "$O/weir_$t.csv" "$O/weir_$t.out"; done
measure weir_T4 "$RUNS" "$(wr "read(\"$ZST\", decompress=false) | unzstd() | csv() | $T2W | write(\"$O/weir_T4.csv.zst\")")"
zstd -q -d -f "$O/weir_T4.csv.zst" -o "$O/weir_T4.out"
# weir: threads, and the zstd paths
measure weir_T2_threads1 "$RUNS" "$W run --threads 1 -e $(printf %q "read(\"$CSV\") | csv() | $T2W | write(\"$O/t1.csv\")")"
measure weir_T2_threads2 "$RUNS" "$W run --threads 2 -e $(printf %q "read(\"$CSV\") | csv() | $T2W | write(\"$O/t2.csv\")")"
measure weir_T2_1core "$RUNS" "taskset -c 0 $W run --threads 1 -e $(printf %q "read(\"$CSV\") | csv() | $T2W | write(\"$O/t1c.csv\")")"
measure weir_T3_group1 "$RUNS" "$(wr "read(\"$CSV\") | csv() | ${G%)}, workers=1) | write(\"$O/t3g1.csv\")")"
measure weir_T4_readdecode "$RUNS" "$(wr "read(\"$ZST\") | csv() | $T2W | write(\"$O/t4r.csv.zst\")")"
measure weir_T4_oneframe "$RUNS" "$(wr "read(\"$ZST1\", decompress=false) | unzstd() | csv() | $T2W | write(\"$O/t4o.csv.zst\")")"
measure weir_unzstd_read "$RUNS" "$(wr "read(\"$ZST\") | discard()")"
measure weir_unzstd_w1 "$RUNS" "$(wr "read(\"$ZST\", decompress=false) | unzstd(workers=1) | discard()")"
measure weir_unzstd_w2 "$RUNS" "$(wr "read(\"$ZST\", decompress=false) | unzstd(workers=2) | discard()")"
measure weir_csv_libcsv "$RUNS" "$(wr "read(\"$CSV\") | csv(engine=\"libcsv\") | count()") > /dev/null"

if [ "${PEERS:-1}" = 1 ]; then
# Miller
measure mlr_T1 "$SLOW_RUNS" "mlr --icsv --onidx count '$CSV' > $O/mlr_T1.out"
measure mlr_T2 "$SLOW_RUNS" "mlr --icsv --ocsv filter '\$fare > 50 && \$payment == \"card\"' then cut -o -f id,fare,tip '$CSV' > $O/mlr_T2.out"
measure mlr_T3 "$SLOW_RUNS" "mlr --icsv --ocsv stats1 -a count,sum,mean -f fare,tip -g payment,passenger_count then cut -o -f payment,passenger_count,fare_count,fare_sum,tip_mean '$CSV' > $O/mlr_T3.out"
# (zstd -dc into stdin: with --prepipe 'zstd -dc', Miller 6.6 lost records on
# some runs here.)
measure mlr_T4 "$SLOW_RUNS" "zstd -dc '$ZST' | mlr --icsv --ocsv filter '\$fare > 50 && \$payment == \"card\"' then cut -o -f id,fare,tip | zstd -q -f -o $O/mlr_T4.csv.zst"
[ "${WALL[mlr_T4]}" = fail ] || zstd -q -d -f "$O/mlr_T4.csv.zst" -o "$O/mlr_T4.out"

# sqlite3: the import is the parse; an in-memory database
SQ="sqlite3 :memory: -cmd '.import --csv $CSV t' -cmd '.headers on' -cmd '.mode csv'"
measure sqlite_T1 "$SLOW_RUNS" "sqlite3 :memory: -cmd '.import --csv $CSV t' 'SELECT count(*) FROM t;' > $O/sqlite_T1.out"
measure sqlite_T2 "$SLOW_RUNS" "$SQ \"SELECT id, fare, tip FROM t WHERE CAST(fare AS REAL) > 50 AND payment = 'card';\" > $O/sqlite_T2.out"
measure sqlite_T3 "$SLOW_RUNS" "$SQ \"SELECT payment, passenger_count, count(*), sum(fare), avg(tip) FROM t GROUP BY payment, passenger_count;\" > $O/sqlite_T3.out"
measure sqlite_T4 "$SLOW_RUNS" "sqlite3 :memory: -cmd \".import --csv '|zstd -dc $ZST' t\" -cmd '.headers on' -cmd '.mode csv' -cmd \".once '|zstd -q -f -o $O/sqlite_T4.csv.zst'\" \"SELECT id, fare, tip FROM t WHERE CAST(fare AS REAL) > 50 AND payment = 'card';\""
[ "${WALL[sqlite_T4]}" = fail ] || zstd -q -d -f "$O/sqlite_T4.csv.zst" -o "$O/sqlite_T4.out"

# gawk: records put back together by quote parity, fields by FPAT
AWK_REC='BEGIN { FPAT = "([^,]*)|(\"([^\"]|\"\")*\")"; OFS = "," }
{ rec = rec == "" ? $0 : rec "\n" $0; q += gsub(/"/, "&"); if (q % 2) next; $0 = rec; rec = ""; q = 0 }
++nr == 1 { next }'
measure gawk_T1 "$SLOW_RUNS" "gawk '{ q += gsub(/\"/, \"&\") } q % 2 == 0 { n++ } END { print n - 1 }' '$CSV' > $O/gawk_T1.out"
measure gawk_T2 "$SLOW_RUNS" "gawk '$AWK_REC
\$7 + 0 > 50 && \$9 == \"card\" { print \$1, \$7, \$8 }
BEGIN { print \"id,fare,tip\" }' '$CSV' > $O/gawk_T2.out"
if [ "${GAWK_ALL:-0}" = 1 ]; then # FPAT runs at a few MB/s: minutes per task
measure gawk_T3 "$SLOW_RUNS" "gawk '$AWK_REC
{ k = \$9 \",\" \$5; n[k]++; s[k] += \$7; t[k] += \$8 }
END { print \"payment,passenger_count,n,total,avg_tip\"; for (k in n) printf \"%s,%d,%.6f,%.12f\\n\", k, n[k], s[k], t[k] / n[k] }' '$CSV' > $O/gawk_T3.out"
measure gawk_T4 "$SLOW_RUNS" "zstd -dc '$ZST' | gawk '$AWK_REC
\$7 + 0 > 50 && \$9 == \"card\" { print \$1, \$7, \$8 }
BEGIN { print \"id,fare,tip\" }' | zstd -q -f -o $O/gawk_T4.csv.zst"
[ "${WALL[gawk_T4]}" = fail ] || zstd -q -d -f "$O/gawk_T4.csv.zst" -o "$O/gawk_T4.out"
fi

# datamash: T3 only (it has no CSV quoting)
measure datamash_T3 "$SLOW_RUNS" "datamash -t, -H -s -g 9,5 count 1 sum 7 mean 8 < '$CSV' > $O/datamash_T3.out"

# DuckDB
if [ "$HAVE_DUCKDB" = 1 ]; then
    DQ="node $ROOT/bench/peers/duckdb.js $THREADS"
    SEL="SELECT id, fare, tip FROM read_csv('%s') WHERE fare > 50 AND payment = 'card'"
    measure duckdb_T1 "$RUNS" "$DQ \"SELECT count(*) FROM read_csv('$CSV')\" > $O/duckdb_T1.out"
    measure duckdb_T2 "$RUNS" "$DQ \"COPY ($(printf "$SEL" "$CSV")) TO '$O/duckdb_T2.out' (HEADER)\""
    measure duckdb_T3 "$RUNS" "$DQ \"COPY (SELECT payment, passenger_count, count(*) AS n, sum(fare) AS total, avg(tip) AS avg_tip FROM read_csv('$CSV') GROUP BY ALL) TO '$O/duckdb_T3.out' (HEADER)\""
    measure duckdb_T4 "$RUNS" "$DQ \"COPY ($(printf "$SEL" "$ZST")) TO '$O/duckdb_T4.csv.zst' (HEADER, COMPRESSION zstd)\""
    [ "${WALL[duckdb_T4]}" = fail ] || zstd -q -d -f "$O/duckdb_T4.csv.zst" -o "$O/duckdb_T4.out"
fi
fi # PEERS
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ---------------------------------------------------------------
mbs() { awk -v b="$BYTES" -v w="$1" 'BEGIN { printf "%.0f", b / w / 1e6 }'; }
{
    echo "Input: $CSV, $BYTES bytes ($ROWS rows); .zst: $ZBYTES bytes (weir, multi-frame)."
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ { sub(/.*: /, ""); print; exit }' /proc/cpuinfo)."
    echo "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END."
    echo "MB/s = input (uncompressed) bytes / wall time; median of $RUNS runs for weir and"
    echo "DuckDB ($THREADS threads), $SLOW_RUNS for the others; CPU s = user + system time (all"
    echo "threads), MB/CPU-s = input MB per CPU second: how much work a tool spends, whatever"
    echo "else the machine runs; RSS = peak resident set (GNU time %M)."
    echo
    echo "| task | tool | wall s | MB/s | weir / tool | CPU s | MB/CPU-s | peak RSS MB | output |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for t in T1 T2 T3 T4; do
        for tool in weir duckdb mlr sqlite gawk datamash; do
            n=${tool}_$t
            [ -n "${WALL[$n]:-}" ] || continue
            if [ "${WALL[$n]}" = fail ]; then
                echo "| $t | $tool | - | - | - | - | - | - | failed: ${FAILED[$n]} |"
                continue
            fi
            verdict=ok
            if [ "$tool" != weir ] && ! python3 bench/peers/check.py "$t" "$O/weir_$t.out" "$O/$n.out" 2>"$O/$n.check"; then
                verdict="WRONG: $(head -c 80 "$O/$n.check" | tr '\n|' '  ')"
            fi
            ratio=-
            if [ "$verdict" = ok ] && [ "$tool" != weir ]; then
                ratio=$(awk -v a="${WALL[$n]}" -v b="${WALL[weir_$t]}" 'BEGIN { printf "%.1fx", a / b }')
            fi
            echo "| $t | $tool | ${WALL[$n]} | $(mbs "${WALL[$n]}") | $ratio | ${CPU[$n]} | $(mbs "${CPU[$n]}") | $((RSS[$n] / 1024)) | $verdict |"
        done
    done
    echo
    echo "| weir, more | wall s | MB/s | CPU s | peak RSS MB | note |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    row() { echo "| $1 | ${WALL[$2]} | $(mbs "${WALL[$2]}") | ${CPU[$2]} | $((RSS[$2] / 1024)) | $3 |"; }
    s21=$(awk -v a="${WALL[weir_T2_threads1]}" -v b="${WALL[weir_T2_threads2]}" 'BEGIN { printf "%.2fx", a / b }')
    row "T2 --threads 1" weir_T2_threads1 ""
    row "T2 --threads 2" weir_T2_threads2 "$s21 of --threads 1"
    c12=$(awk -v a="${WALL[weir_T2_1core]}" -v b="${WALL[weir_T2_threads2]}" 'BEGIN { printf "%.2fx", a / b }')
    row "T2 on one core (taskset -c 0, --threads 1)" weir_T2_1core "--threads 2 on two cores: $c12 of this"
    row "T3 with group(..., workers=1)" weir_T3_group1 "no hash split of the rows"
    row "T4, read() decodes (one core)" weir_T4_readdecode ""
    row "T4, one-frame .zst (zstd CLI)" weir_T4_oneframe "the splitter streams it"
    u1=$(awk -v a="${WALL[weir_unzstd_w1]}" -v b="${WALL[weir_unzstd_w2]}" 'BEGIN { printf "%.2fx", a / b }')
    row "decode .zst: read(), discard()" weir_unzstd_read "streaming, in read()"
    row "decode .zst: unzstd(workers=1)" weir_unzstd_w1 "frames, one replica"
    row "decode .zst: unzstd(workers=2)" weir_unzstd_w2 "$u1 of workers=1"
    row "T1 with csv(engine=\"libcsv\")" weir_csv_libcsv "every record through libcsv"
    # Peak RSS against the runtime's edge capacity (0: the default, 16 batches
    # or 2 MiB and two; then counts of 2 and 4 under the same 2 MiB bound).
    cc -O2 -Ipipeline -o "$O/chancap" bench/peers/chancap.c -Wl,--whole-archive build/libweir.a \
        -Wl,--no-whole-archive -fopenmp -lcsv -lzstd -lpthread -lm -ldl
    echo
    echo "| peak RSS MB, wall s by channel capacity (bench/peers/chancap.c) | default: 16, or 2 MiB | 2 | 4 |"
    echo "| --- | ---: | ---: | ---: |"
    for t in T1 T2 T3 T4; do
        case $t in
        T1) spec="read(\"$CSV\") | csv() | count()" ;;
        T2) spec="read(\"$CSV\") | csv() | $T2W | write(\"$O/c2.csv\")" ;;
        T3) spec="read(\"$CSV\") | csv() | $G | write(\"$O/c3.csv\")" ;;
        T4) spec="read(\"$ZST\", decompress=false) | unzstd() | csv() | $T2W | write(\"$O/c4.csv.zst\")" ;;
        esac
        line="| $t"
        for cap in 0 2 4; do
            out=$("$O/chancap" "$cap" "$spec" 2>&1 >/dev/null)
            kb=$(awk '{ print $(NF-1) }' <<<"$out")
            line="$line | $((kb / 1024)), $(awk '{ print $(NF-3) }' <<<"$out")"
        done
        echo "$line |"
    done
} | tee "$O/peers.md"
