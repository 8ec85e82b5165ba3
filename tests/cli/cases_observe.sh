# CLI cases for seeing inside a run: --stats (table and JSON), the
# bottleneck, live progress in a pseudo-terminal, --trace, `weir bench`, and
# explain's channel memory. Sourced by cli_test.sh.
#
# Nothing here compares timings: the JSON is checked with python3 for its
# structure and for counts that are exact (rows, bytes); a bottleneck is
# checked only where a case makes one stage slower by orders of magnitude.

# Python helpers, in the scratch folder: stats(path) reads the one
# --stats=json line of a stderr capture.
obs_lib=$scratch/obslib.py
cat >"$obs_lib" <<'PY'
import json, os, sys

def stats(path):
    lines = [l for l in open(path, encoding="utf-8") if l.startswith('{"weir_stats"')]
    assert len(lines) == 1, "want one --stats=json line in %s, got %d" % (path, len(lines))
    d = json.loads(lines[0])
    assert d["weir_stats"] == 1, d["weir_stats"]
    return d, {s["label"]: s for s in d["stages"]}

def want(cond, *msg):
    if not cond:
        print("FAILED:", *msg)
        sys.exit(1)
PY
obs_py() { PYTHONPATH=$scratch python3 - "$@"; }

# ---- help and usage ----------------------------------------------------------------
t help_bench 0 '$WEIR bench --help'
e stats_bad_mode 2 "run: --stats takes table, replicas or json, not 'frob'" '$WEIR run --stats=frob -e "gen(rows=3) | count()"'
e trace_needs_file 2 "run: option '--trace' needs a value" '$WEIR run -e "gen(rows=3) | count()" --trace'
e bench_runs_zero 2 "bench: --runs takes a number from 1 to 100000, not '0'" '$WEIR bench --runs 0 -e "gen(rows=3) | count()"'
e bench_no_spec 2 "bench: no spec" '$WEIR bench'
e stats_not_for_check 2 "check: unknown option '--stats'" '$WEIR check --stats -e "gen(rows=3) | count()"'

# ---- --stats=json: counts against the real input and output ----------------------
t stats_json_stdout_unchanged 0 '$WEIR run --stats=json -e "gen(rows=12345) | count()" 2>err'
check stats_json_gen_to_csv '
    $WEIR run --stats=json -e "gen(rows=12345) | to_csv() | write(\"o.csv\")" 2>err &&
    obs_py err "$(stat -c %s o.csv)" <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
size = int(sys.argv[2])
want(d["status"] == "ok" and d["error"] is None, d["status"], d["error"])
want(d["version"] and d["wall_ns"] > 0 and d["cpus"] >= 1 and d["timing"] is True, d)
want([x["label"] for x in d["stages"]] == ["gen", "to_csv", "write"], d["stages"])
g, c, w = s["gen"], s["to_csv"], s["write"]
want(g["rows_out"] == 12345 and g["rows_in"] == 0, "gen rows", g["rows_out"])
want(c["rows_in"] == 12345 and c["rows_out"] == 0, "to_csv rows", c["rows_in"])
want(c["bytes_in"] == g["bytes_out"], "bytes gen -> to_csv")
want(c["bytes_out"] == size, "to_csv bytes_out", c["bytes_out"], "file", size)
want(w["bytes_in"] == size and w["bytes_out"] == 0, "write bytes_in", w["bytes_in"])
want(d["rows"] == 12345, "rows", d["rows"])
want(g["pos"] == "<expr>:1:1" and c["pos"] == "<expr>:1:19", g["pos"], c["pos"])
want(g["in"] == "none" and g["out"] == "rows" and c["out"] == "bytes" and w["out"] == "none",
     "kinds")
want(c["inputs"] == [0] and w["inputs"] == [1] and g["inputs"] == [], "inputs")
for x in d["stages"]:
    want(x["replicas"] == len(x["per_replica"]) == 1, x["label"], "replicas")
    want(x["batches_in"] >= 0 and x["busy_ns"] >= 0 and 0 <= x["busy_pct"] <= 100.5, x)
    want(x["busy_ns"] + x["wait_in_ns"] + x["wait_out_ns"] <= d["wall_ns"] * 1.05, x)
    r = x["per_replica"][0]
    for k in ("rows_in", "rows_out", "bytes_in", "bytes_out", "busy_ns"):
        want(r[k] == x[k], x["label"], k)
want(d["bottleneck"]["kind"] in ("stage", "input", "output", "splitter", "none"), d["bottleneck"])
PY'
check stats_json_read_csv_counts '
    $WEIR gen trips --rows 5000 -o t.csv && zstd -q t.csv -o t.csv.zst &&
    $WEIR run --stats=json -e "read(\"t.csv\") | csv() | filter(fare > 30) | write(\"big.csv\")" 2>err1 &&
    $WEIR run --stats=json -e "read(\"t.csv.zst\") | csv() | count()" 2>err2 >count.out &&
    obs_py err1 err2 "$(stat -c %s t.csv)" "$(stat -c %s t.csv.zst)" "$(($(wc -l <big.csv) - 1))" <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
csv_size, zst_size, kept = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = s["read"]
want(r["bytes_out"] == csv_size, "read bytes_out", r["bytes_out"], csv_size)
want(r["progress_done"] == r["progress_total"] == csv_size, "read progress", r["progress_done"])
want(d["input_bytes"] == csv_size, "input_bytes", d["input_bytes"])
want(s["csv"]["rows_out"] == 5000 and s["csv"]["bytes_in"] == csv_size, "csv", s["csv"]["rows_out"])
f = s["filter"]
want(f["rows_in"] == 5000 and f["rows_out"] == kept and 0 < kept < 5000, "filter", f["rows_out"], kept)
want(f["replicas"] == len(f["per_replica"]) and sum(x["rows_out"] for x in f["per_replica"]) == kept,
     "per replica rows")
want(s["write"]["rows_in"] == kept, "write rows_in")
d, s = stats(sys.argv[2])
r = s["read"]
want(r["progress_total"] == zst_size and r["progress_done"] == zst_size, "zst progress", r)
want(r["bytes_out"] == csv_size, "zst read bytes_out is the uncompressed size", r["bytes_out"])
want(s["count"]["rows_in"] == 5000, "count rows_in")
PY
    [ "$(cat count.out)" = 5000 ]'
check stats_json_on_failure '
    $WEIR run --stats=json -e "read(\"$DATA/ragged.csv\") | csv() | write(\"o.csv\")" 2>err; rc=$?
    [ $rc = 1 ] && [ "$(wc -l <err)" = 2 ] && tail -1 err | grep -q "^weir: stage .csv.*ragged.csv line 3" &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
want(d["status"] == "error" and "ragged.csv line 3" in d["error"], d["status"], d["error"])
PY'
check stats_none_on_spec_error '
    $WEIR run --stats=json -e "gen(rows=3) | select(nope) | count()" 2>err; rc=$?
    [ $rc = 2 ] && [ "$(wc -l <err)" = 1 ] && grep -q "unknown column" err'

# ---- the table -------------------------------------------------------------------------
check stats_table '
    $WEIR run --stats -e "gen(rows=20000) | filter(fare > 10, workers=2) | to_csv() | write(\"o.csv\")" 2>err &&
    head -1 err | grep -Eq "^stage +repl +rows in +rows out +MB in +MB out +busy +wait in +wait out +rows/s +MB/s$" &&
    grep -Eq "^gen \(<expr>:1:1\) +1 +- +20000 " err &&
    grep -Eq "^filter \(<expr>:1:19\) +2 +20000 " err &&
    grep -Eq "^  collect +1 +[0-9]+ +[0-9]+ " err &&
    grep -Eq "^to_csv \(<expr>:1:50\) +1 " err &&
    grep -Eq "^write \(<expr>:1:61\) +1 " err &&
    grep -Eq "^wall time .* on [0-9]+ CPUs?" err && grep -q "^bottleneck: " err &&
    [ "$(wc -l <err)" = 8 ] && ! grep -q "#0" err'
check stats_replicas '
    $WEIR run --stats=replicas -e "gen(rows=20000) | filter(fare > 10, workers=2) | discard()" 2>err &&
    [ "$(grep -Ec "^  #[01] " err)" = 2 ] &&
    awk "/^  #/ {s += \$2} END {exit !(s == 20000)}" err'

# ---- the bottleneck: a stage made slow on purpose ----------------------------------
# zstd at level 19 on one worker is ~100x slower than generating and
# formatting the rows it gets.
check bottleneck_slow_zstd '
    $WEIR run --stats=json -e "gen(rows=60000) | to_csv() | zstd(level=19, workers=1) | discard()" 2>err &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
b = d["bottleneck"]
want(b["label"] == "zstd" and b["kind"] == "stage" and b["index"] == 2, b)
want(b["pos"] == "<expr>:1:30" and b["busy_pct"] > 50, b)
want(("workers" in b["advice"]) or ("CPU" in b["advice"]), b["advice"])
PY
    $WEIR run --stats -e "gen(rows=60000) | to_csv() | zstd(level=19, workers=1) | discard()" 2>err &&
    grep -q "^bottleneck: zstd (<expr>:1:30): [0-9]*% busy" err'
# Sorting by three numeric keys (each comparison parses numbers) is several
# times slower than generating the rows; sort runs as one instance.
check bottleneck_slow_sort '
    $WEIR run --stats=json -e "gen(rows=300000) | sort(by=[fare, tip, distance]) | discard()" 2>err &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
b = d["bottleneck"]
want(b["label"] == "sort" and b["kind"] == "stage" and b["pos"] == "<expr>:1:20", b)
want(s["sort"]["parallel"] or "not parallel-safe" in b["advice"], b["advice"])
PY'
# csv's splitter in front of a slow stage: holding back until its replicas
# catch up is waiting to send, not work (weir_stage_waited_out).
check bottleneck_splitter_waits_are_not_busy '
    $WEIR gen trips --rows 100000 -o t.csv &&
    $WEIR run --stats=json -e "read(\"t.csv\") | csv(chunk=65536) | sort(by=[fare, tip, distance]) | discard()" 2>err &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
b = d["bottleneck"]
want(b["label"] == "sort", b)
sp = s["csv"]["splitter"]
want(sp["busy_pct"] < 10, "the splitter is mostly waiting", sp)
PY'
# A collector's own counters: what it passed on, what it split by key.
check stats_collector_counts '
    $WEIR run --threads 2 --stats=json -e "gen(rows=30000) | filter(fare > 10, workers=2) | group(by=payment, n=count(), workers=2) | discard()" 2>err &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
f, g = s["filter"], s["group"]
c = f["collector"]
want(c is not None and c["rows_in"] == f["rows_out"] == c["rows_out"], "filter collector", c)
want(c["busy_pct"] is not None and c["busy_pct"] + c["wait_in_pct"] + c["wait_out_pct"] <= 101, c)
want(g["rows_in"] == f["rows_out"], "group got what the collector split")
want(g["collector"] is not None and g["collector"]["rows_out"] == g["rows_out"], g["collector"])
want(s["gen"]["collector"] is None and s["discard"]["collector"] is None)
PY'
# A sink that cannot write: stdout is a pipe nobody reads for a second.
check bottleneck_slow_output '
    $WEIR run --stats=json -e "gen(rows=100000) | to_csv() | write(\"-\")" 2>err | { sleep 2; cat >/dev/null; }
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
b = d["bottleneck"]
want(b["label"] == "write" and b["kind"] == "output", b)
want(s["to_csv"]["wait_out_pct"] > 50, "to_csv waits to send", s["to_csv"]["wait_out_pct"])
PY'
# A source that waits: stdin gets its data after a second.
check bottleneck_slow_input '
    { sleep 1; printf "a,b\n1,2\n3,4\n"; } | $WEIR run --stats=json -e "read(\"-\") | csv() | count()" 2>err >out &&
    [ "$(cat out)" = 2 ] &&
    obs_py err <<"PY"
import sys
from obslib import *
d, s = stats(sys.argv[1])
b = d["bottleneck"]
want(b["label"] == "read" and b["kind"] == "input", b)
want(s["csv"]["wait_in_pct"] > 50, "csv waits for input")
PY'

# ---- live progress ------------------------------------------------------------------------
# script(1) gives the run a pseudo-terminal; what it wrote lands in pty.out.
# A --timeout makes a run that lasts long enough on any machine.
check progress_in_terminal '
    printf "%s\n" "exec $WEIR run --timeout 1.5s -e \"gen(rows=0) | discard()\"" > cmd.sh
    script -qec "sh ./cmd.sh" /dev/null > pty.out; rc=$?
    [ $rc = 1 ] || { echo "exit $rc"; exit 1; }
    obs_py pty.out <<"PY"
import sys
from obslib import *
out = open(sys.argv[1], "rb").read()
want(b"rows/s" in out and b"\r" in out, "no progress line in", out[:300])
want(b"gen " in out and b"discard " in out and b"[" in out, "no per-stage line", out[:300])
erase = out.rfind(b"\r\x1b[J")
want(erase >= 0, "progress not erased", out[-300:])
rest = out[erase + 4:]
want(rest.startswith(b"weir: deadline passed") and rest.count(b"\n") == 1, "after the erase:", rest)
want(out.count(b"weir: ") == 1 and out.index(b"weir: ") > erase, "an error line before the erase")
want(b"\x1b[1m" in out, "colour expected without NO_COLOR")
PY'
# The count comes through the display's stdout relay: the lines are erased
# before it.
check progress_erased_before_output '
    cat > cmd.sh <<EOF
{ sleep 1.2; printf "a,b\\n1,2\\n"; } | $WEIR run -e "read(\\"-\\") | csv() | count()"
EOF
    NO_COLOR=1 script -qec "sh ./cmd.sh" /dev/null > pty.out &&
    obs_py pty.out <<"PY"
import sys
from obslib import *
out = open(sys.argv[1], "rb").read()
want(b"MB/s" in out, "no progress shown", out)
want(b"\x1b[J1\r\n" in out, "the count does not follow an erase:", out[-200:])
last = out.rfind(b"\r\x1b[J")
want(b"MB/s" not in out[last:], "progress left after the last erase", out[-200:])
want(b"\x1b[1m" not in out and b"\x1b[33m" not in out, "colour with NO_COLOR", out)
PY'
check progress_absent_when_not_a_terminal '
    $WEIR run --timeout 1s -e "gen(rows=0) | discard()" 2>err; rc=$?
    [ $rc = 1 ] && [ "$(cat err)" = "weir: deadline passed: the run did not finish within --timeout (1 s); outputs were not written" ]'
check progress_off_in_terminal '
    printf "%s\n" "exec $WEIR run --no-progress --timeout 1s -e \"gen(rows=0) | discard()\"" > cmd.sh
    script -qec "sh ./cmd.sh" /dev/null > pty.out
    ! grep -q "rows/s" pty.out && ! grep -q "$(printf "\033")" pty.out && grep -q "deadline passed" pty.out'
check progress_forced_into_file '
    $WEIR run --progress --timeout 1s -e "gen(rows=0) | discard()" 2>err; rc=$?
    [ $rc = 1 ] && grep -q "rows/s" err && tail -1 err | grep -q "deadline passed"'

# ---- --trace ----------------------------------------------------------------------------------
obs_check_trace() { # FILE TRACKS…: the trace's structure, and its tracks' names
    obs_py "$@" <<"PY"
import sys, collections
from obslib import *
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
want(sorted(names.values()) == sorted(sys.argv[2:]), "tracks", sorted(names.values()))
want(len(names) == len(set(names)), "one tid per track")
want(0 not in names, "tid 0 is the process")
spans = collections.defaultdict(list)
open_ = {}
for e in ev:
    if e["ph"] == "M":
        continue
    want(e["ph"] in ("B", "E"), "phase", e)
    want(e["name"] in ("process", "wait input", "wait output"), "span name", e)
    want(e["tid"] in names and e["pid"] == 1, "span on a track without a name", e)
    if e["ph"] == "B":
        want(e["tid"] not in open_, "B before the previous E on tid", e)
        open_[e["tid"]] = e
    else:
        b = open_.pop(e["tid"], None)
        want(b is not None and b["name"] == e["name"] and e["ts"] >= b["ts"], "unmatched E", e)
        spans[e["tid"]].append((b["ts"], e["ts"], e["name"]))
want(not open_, "B without E", open_)
# On a track, spans are disjoint or nested (a wait inside a process span).
for tid, sp in spans.items():
    sp.sort(key=lambda x: (x[0], -x[1]))
    stack = []
    for s, t, n in sp:
        while stack and stack[-1] <= s:
            stack.pop()
        want(not stack or t <= stack[-1], "overlapping spans on", names[tid], s, t, stack[-1:])
        stack.append(t)
want(sum(len(v) for v in spans.values()) > 0, "no spans")
want("process" in {n for v in spans.values() for _, _, n in v}, "no process span")
PY
}
check trace_structure '
    $WEIR run --trace t.json -e "gen(rows=50000) | filter(fare > 10, workers=2) | to_csv() | discard()" &&
    obs_check_trace t.json gen "filter #0" "filter #1" "filter (collect)" to_csv discard &&
    [ "$(ls)" = t.json ]'
check trace_written_on_failure '
    $WEIR run --trace t.json -e "gen(rows=100) | write(\"nodir/o.csv\")" 2>err; rc=$?
    [ $rc = 1 ] && [ "$(wc -l <err)" = 1 ] && obs_check_trace t.json gen write &&
    [ "$(ls | tr "\n" " ")" = "err t.json " ]'
check trace_not_written_on_spec_error '
    $WEIR run --trace t.json -e "gen(rows=3) | select(nope) | count()" 2>err; rc=$?
    [ $rc = 2 ] && [ ! -e t.json ]'
e trace_unwritable 1 "cannot write trace 'nodir/t.json': No such file or directory" '$WEIR run --trace nodir/t.json -e "gen(rows=3) | discard()"'

# ---- weir bench ----------------------------------------------------------------------------------
check bench_smoke '
    $WEIR bench --runs 3 --warmup 1 -e "gen(rows=20000) | to_csv() | discard()" >out &&
    head -1 out | grep -q "^weir bench: <expr>, 3 runs after 1 warm-up" &&
    grep -Eq "^ +median +min +max$" out &&
    grep -Eq "^wall time +[0-9.]+ m?s +[0-9.]+ m?s +[0-9.]+ m?s$" out &&
    grep -Eq "^input MB/s +[0-9.]+ +[0-9.]+ +[0-9.]+$" out &&
    grep -Eq "^rows/s +[0-9.]+( [KMG])? +[0-9.]+( [KMG])? +[0-9.]+( [KMG])?$" out &&
    grep -q "^per run: .* 20000 rows$" out &&
    grep -Eq "^to_csv \(<expr>:1:19\) +1 +20000 " out && grep -q "^bottleneck: " out'
check bench_json '
    $WEIR bench --runs 3 --warmup 0 --json -e "gen(rows=5000) | count()" >out &&
    obs_py out <<"PY"
import sys
from obslib import *
d = json.loads(open(sys.argv[1]).read())
want(d["weir_bench"] == 1 and d["runs"] == 3 and d["warmup"] == 0, d)
want(len(d["wall_ns_all"]) == 3 and all(w > 0 for w in d["wall_ns_all"]), d["wall_ns_all"])
w = d["wall_s"]
want(w["min"] <= w["median"] <= w["max"], w)
want(abs(w["median"] - sorted(d["wall_ns_all"])[1] / 1e9) < 1e-5, w, d["wall_ns_all"])
want(d["rows"] == 5000 and d["median_run"]["weir_stats"] == 1, d["rows"])
want(d["median_run"]["stages"][1]["rows_in"] == 5000, "count rows_in")
PY'
check bench_pipeline_stdout_discarded '
    $WEIR bench --runs 2 -e "gen(rows=10) | count()" >out && ! grep -qx 10 out'
e bench_run_error 1 "stage 'csv'.*ragged.csv line 3" '$WEIR bench --runs 2 -e "read(\"$DATA/ragged.csv\") | csv() | discard()"'

# ---- explain: channel memory -------------------------------------------------------------------------
t explain_memory 0 '$WEIR explain --threads 2 -e "let t = gen(rows=10)
t | filter(fare > 1, workers=2) | to_csv() | write(\"o.csv\")
t | count()"'

# ---- chaining: replica k feeds replica k (csv -> filter -> compute) -----------------------------
t explain_dot_chained 0 '$WEIR explain --dot --threads 2 -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1) | compute(w = v * 2) | write(\"o.csv\")"'
check chained_same_bytes_as_collected '
    s="read(\"$DATA/../../../datasets/sample/trips-1k.csv\") | csv(chunk=4096) | filter(fare > 10) | compute(x = fare * 2) | select(id, x, zone, notes) | write(\"OUT.csv\")"
    $WEIR explain --threads 4 -e "$s" | grep -q "each feeding the same replica of filter" &&
    $WEIR run --threads 4 -e "${s/OUT/a}" &&
    WEIR_NO_CHAIN=1 $WEIR run --threads 4 -e "${s/OUT/b}" &&
    WEIR_NO_CHAIN=1 $WEIR explain --threads 4 -e "$s" | grep -q "csv (<expr>:1:[0-9]*): bytes -> rows, 4 replicas, ordered collector" &&
    $WEIR run --threads 1 -e "${s/OUT/c}" &&
    cmp a.csv b.csv && cmp a.csv c.csv && [ "$(wc -l < a.csv)" -gt 100 ]'

# --threads N keeps the run to N CPUs (when there are more).
check threads_one_cpu '
    [ "$(nproc)" -gt 1 ] || exit 0
    $WEIR run --threads 1 --stats=json -e "gen(rows=100) | count()" 2>s.json >/dev/null &&
    python3 -c "import json; d = json.load(open(\"s.json\")); assert d[\"cpus\"] == 1, d[\"cpus\"]" &&
    $WEIR run --stats=json -e "gen(rows=100) | count()" 2>s2.json >/dev/null &&
    python3 -c "import json, os; d = json.load(open(\"s2.json\")); assert d[\"cpus\"] == len(os.sched_getaffinity(0)), d[\"cpus\"]"'
