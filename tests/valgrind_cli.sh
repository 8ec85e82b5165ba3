#!/usr/bin/env bash
# The weir binary under valgrind memcheck: a representative set of CLI
# commands (every built-in stage, fan-out and fan-in, replicas, zstd in and
# out, spills, errors of each kind, a cancel) must run with no invalid
# access and no leak. valgrind's exit code 9 marks an error; a leak counts
# when it is definite or indirect ("possibly lost" is what thread stacks
# and libgomp's pool look like at exit, hence also WEIR_LAUNCH=pthread).
#
#   tests/valgrind_cli.sh [FILTER]     WEIR=path/to/weir to test another build
#
# Slow (valgrind runs every thread on one core): a few minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
WEIR=${WEIR:-$top/build/weir}
DATA=$top/tests/cli/data
SAMPLE=$top/datasets/sample/trips-1k.csv
FILTER=${1:-}
command -v valgrind >/dev/null || { echo "valgrind_cli: valgrind is not installed (Debian: valgrind)"; exit 1; }
[ -x "$WEIR" ] || { echo "valgrind_cli: no weir binary at $WEIR (run make)"; exit 1; }

export WEIR_LAUNCH=pthread
VG=(valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --suppressions="$here/valgrind.supp")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
pass=0
fail=0
failed=()

# v NAME RC ARGS…: run `weir ARGS…` under valgrind in a fresh directory;
# expect exit code RC (valgrind's 9 is never expected) and no report.
v() {
    local name=$1 rc=$2
    shift 2
    [ -z "$FILTER" ] || [[ $name == *"$FILTER"* ]] || return 0
    local dir=$scratch/$name
    mkdir -p "$dir"
    (cd "$dir" && "${VG[@]}" "$WEIR" "$@") >"$dir/stdout" 2>"$dir/stderr" </dev/null
    local got=$?
    if [ "$got" = "$rc" ] && ! grep -q '^==[0-9]*==' "$dir/stderr"; then
        pass=$((pass + 1))
        echo "ok   $name"
    else
        fail=$((fail + 1))
        failed+=("$name")
        echo "FAIL $name: exit $got, expected $rc"
        head -40 "$dir/stderr"
    fi
}

# ---- runs that succeed -----------------------------------------------------------
v csv_filter_write 0 run -e "read(\"$DATA/rfc.csv\") | csv() | filter(amount > 0) | write(\"o.csv\")"
v transforms 0 run -e "read(\"$SAMPLE\") | csv() | filter(fare > 10, workers=2) |
    compute(t = round(fare * 1.1, 2), z = upper(zone), n = len(notes)) | select(id, t, z, n) |
    rename(fare = t) | drop(n) | head(500) | sample(0.5, seed=1) | to_jsonl() | write(\"o.jsonl\")"
v group_sort_dedup 0 run -e "read(\"$SAMPLE\") | csv() | group(by=[payment, passenger_count],
    n=count(), total=sum(fare), avg=mean(tip), lo=min(fare), hi=max(fare)) | sort(by=total, desc=true)"
v group_spills 0 run --mem 1M -e "gen(rows=30000) | group(by=id, n=count()) | count()"
v sort_spills 0 run --mem 1M -e "gen(rows=30000) | sort(by=fare) | dedup(payment) | count()"
v zstd_roundtrip 0 run -e "gen(rows=20000) | to_csv() | zstd(level=1, workers=2) | write(\"g.zst\")"
v zst_rows_out 0 run -e "gen(rows=5000) | write(\"o.csv.zst\")"
v fan_out_in 0 run -e "let t = gen(rows=5000)
let a = t | filter(fare > 20)
let b = t | filter(fare <= 20, workers=2)
merge(a, b) | count()
t | write(\"all.csv\")
let c = gen(rows=300, seed=2)
let d = gen(rows=200, seed=3) | sample(0.5)
concat(c, d) | write(\"o.jsonl\")"
v split 0 run -e "gen(rows=2000) | split(\"part-{payment}.csv\", by=payment)"
v head_stops_endless 0 run -e "gen(rows=0) | filter(fare > 1, workers=2) | head(1000) | count()"
v gen_command 0 gen trips --rows 2000 -o t.csv.zst
v check_ok 0 check -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1) | count()"
v explain 0 explain --threads 2 -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1, workers=2) | write(\"o.csv\")"
v explain_dot 0 explain --dot -e "gen(rows=5) | group(by=payment, n=count()) | count()"
v stages_list 0 stages
v stages_page 0 stages csv

# ---- runs that fail: every error path frees what it made ------------------------------
v err_spec_syntax 2 run -e "read(\"x.csv\" | csv()"
v err_unknown_column 2 run -e "read(\"$DATA/kv.csv\") | csv() | filter(vv > 1)"
v err_ragged 1 run -e "read(\"$DATA/ragged.csv\") | csv() | write(\"o.csv\")"
v err_unterminated 1 run -e "read(\"$DATA/unterminated.csv\") | csv() | write(\"o.csv\")"
v err_missing_input 1 run -e "read(\"nope.csv\") | csv() | count()"
v err_dev_full 1 run -e "gen(rows=1000) | write(\"/dev/full\")"
v err_deep_nesting 2 run -e "gen(rows=1) | filter($(printf '(%.0s' $(seq 300))1$(printf ')%.0s' $(seq 300))) | count()"
v err_timeout 1 run --timeout 1s -e "gen(rows=0) | group(by=id, n=count()) | count()"
printf '\050\265\057\375\040\012\050\000\000hello\001\000\000' >"$scratch/short.zst"
v err_zstd_short_frame 1 run -e "read(\"$scratch/short.zst\") | write(\"o.bin\")"
v err_max_field 1 run -e "read(\"$DATA/rfc.csv\") | csv(max_field=3) | count()"

echo "valgrind: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
    printf '  failed: %s\n' "${failed[@]}"
    exit 1
fi
