# Reliability cases, sourced by cli_test.sh: signals, faults, hostile input.
# The run is stopped, starved or fed garbage, and must end with the
# documented exit code, one clear line on stderr, no half-written target
# and no temporary left behind — never a crash, a hang or a silently short
# result. Timing is not asserted here (tests/reliability_test.sh measures
# how fast a cancel stops the workers); a bounded wait only turns a hang
# into a failure.

REL=$scratch/reliability
mkdir -p "$REL"

# rel_wait_for COUNT CMD…: run CMD every 50 ms until it succeeds, at most
# COUNT times. @return CMD's last status.
rel_wait_for() {
    local n=$1
    shift
    until "$@"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.05
    done
}
rel_has_temp() { ls -A | grep -q '\.weir-'; }
rel_gone() { ! kill -0 "$1" 2>/dev/null; }

# rel_stop PID: wait up to 10 s for PID to end (SIGKILL after that, so a
# hang fails the case instead of the suite). @return its exit code, or 99.
rel_stop() {
    if ! rel_wait_for 200 rel_gone "$1"; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        echo "still running 10 s after the signal"
        return 99
    fi
    wait "$1"
}

# rel_interrupt SIG SPEC [SECONDS]: run SPEC in the background, wait until
# its temporary exists and then SECONDS more (default 0.3: data flows),
# send SIG. stderr goes to ./err. @return the run's exit code.
rel_interrupt() {
    "$WEIR" run -e "$2" 2>err &
    local pid=$!
    rel_wait_for 200 rel_has_temp || echo "no temporary appeared"
    sleep "${3:-0.3}"
    kill -"$1" "$pid"
    rel_stop "$pid"
}

# rel_only FILES…: the directory holds exactly these names.
rel_only() { [ "$(ls -A | tr '\n' ' ')" = "$* " ] || { echo "left: $(ls -A)"; false; }; }

# ---- signals -------------------------------------------------------------------------------
check rel_sigint_busy_pipeline 'echo old > o.csv
    rel_interrupt INT "gen(rows=0) | filter(fare > 1, workers=2) | compute(x = fare * 2) | write(\"o.csv\")"
    rc=$?; [ $rc = 130 ] || { echo "exit $rc"; exit 1; }
    [ "$(cat o.csv)" = old ] && rel_only err o.csv &&
    [ "$(cat err)" = "weir: interrupted by SIGINT: outputs were not written" ]'
check rel_sigterm_busy_pipeline_zst 'echo old > o.csv.zst
    rel_interrupt TERM "gen(rows=0) | filter(fare > 1, workers=2) | compute(x = fare * 2) | write(\"o.csv.zst\")"
    rc=$?; [ $rc = 143 ] || { echo "exit $rc"; exit 1; }
    [ "$(cat o.csv.zst)" = old ] && rel_only err o.csv.zst &&
    [ "$(cat err)" = "weir: interrupted by SIGTERM: outputs were not written" ]'
# group holds state (and may spill to TMPDIR): a cancel drops it all.
check rel_sigint_group_state 'mkdir spill
    TMPDIR=$PWD/spill rel_interrupt INT "gen(rows=0) | group(by=id, n=count(), total=sum(fare)) | write(\"g.csv\")" 1.5
    rc=$?; [ $rc = 130 ] || { echo "exit $rc"; cat err; exit 1; }
    rel_only err spill && [ -z "$(ls -A spill)" ]'
check rel_sigint_two_writers 'echo old > a.csv
    rel_interrupt INT "let t = gen(rows=0)
t | write(\"a.csv\")
t | filter(fare > 20) | write(\"b.jsonl\")"
    rc=$?; [ $rc = 130 ] && [ "$(cat a.csv)" = old ] && rel_only a.csv err'
# Waits that are not on a channel: a FIFO nobody has opened for writing,
# and a pipe that stays open but silent. The cancel must reach them.
check rel_sigint_fifo_without_writer 'mkfifo in.fifo
    $WEIR run -e "read(\"in.fifo\") | csv() | write(\"o.csv\")" 2>err & pid=$!
    sleep 0.3; kill -INT $pid; rel_stop $pid; rc=$?
    [ $rc = 130 ] || { echo "exit $rc"; exit 1; }
    rel_only err in.fifo'
check rel_sigint_silent_pipe 'mkfifo in.fifo; sleep 30 > in.fifo & writer=$!
    $WEIR run -e "read(\"in.fifo\") | csv() | count()" >out 2>err & pid=$!
    sleep 0.3; kill -INT $pid; rel_stop $pid; rc=$?; kill $writer 2>/dev/null
    [ $rc = 130 ] && [ ! -s out ] || { echo "exit $rc"; exit 1; }'
check rel_sigint_twice 'echo old > o.csv
    $WEIR run -e "gen(rows=0) | filter(fare > 1, workers=2) | write(\"o.csv\")" 2>err & pid=$!
    rel_wait_for 200 rel_has_temp; kill -INT $pid; kill -INT $pid
    rel_stop $pid; rc=$?
    [ $rc = 130 ] && [ "$(cat o.csv)" = old ] || { echo "exit $rc"; exit 1; }'
# Two test stages in a plugin, built here against weir.h alone:
#   stubborn()  deaf to cancels: sleeps a minute in its first process();
#   probe()     a sink whose finish() leaves a file "finish-ran" — finish()
#               is for the end of the input, never after a cancel
#               (weir.h, stage callbacks).
rel_probe_src='#include <weir.h>
#include <stdio.h>
#include <time.h>
static void touch(const char *name)
{
    FILE *f = fopen(name, "w");
    if (f) fclose(f);
}
static int stubborn_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    touch("busy");
    struct timespec t = {60, 0};
    while (nanosleep(&t, &t) != 0) {}
    return 0;
}
static int probe_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    return 0;
}
static int probe_finish(weir_stage *s)
{
    (void)s;
    touch("finish-ran");
    return 0;
}
static const weir_stage_def stubborn = {
    .abi = WEIR_ABI_VERSION, .name = "stubborn", .summary = "sleeps, deaf to cancels",
    .args = (const weir_arg_def[]){{NULL, 0, NULL, NULL}},
    .in_kind = WEIR_KIND_ROWS, .out_kind = WEIR_KIND_ROWS, .process = stubborn_process};
static const weir_stage_def probe = {
    .abi = WEIR_ABI_VERSION, .name = "probe", .summary = "sink; finish() leaves a file",
    .args = (const weir_arg_def[]){{NULL, 0, NULL, NULL}},
    .in_kind = WEIR_KIND_ANY, .out_kind = WEIR_KIND_NONE, .process = probe_process,
    .finish = probe_finish};
static int init(void)
{
    int rc = weir_stage_register(&stubborn);
    return rc ? rc : weir_stage_register(&probe);
}
WEIR_PLUGIN(init)'
printf '%s\n' "$rel_probe_src" >"$REL/probe.c"
cc -std=c11 -Wall -Wextra -shared -fPIC -I"$top/pipeline" -o "$REL/probe.so" "$REL/probe.c" \
    >"$REL/probe.log" 2>&1
check rel_probe_plugin_builds '[ -s "$REL/probe.so" ] || { cat "$REL/probe.log"; false; }'
check rel_finish_runs_at_end '$WEIR --plugin "$REL/probe.so" run -e "gen(rows=100) | probe()" && [ -e finish-ran ]'
# After a cancel, finish() must not run — not in a sink fed directly, nor
# behind a replicated stage (a group would otherwise sort and emit its
# whole table, a write fsync a file about to be deleted).
rel_no_finish_after_cancel() { # SPEC
    local i
    for i in 1 2 3 4 5 6 7 8; do
        rm -f finish-ran
        $WEIR --plugin "$REL/probe.so" run -e "$1" 2>err & local pid=$!
        sleep 0.4
        kill -INT $pid
        rel_stop $pid
        local rc=$?
        [ $rc = 130 ] || { echo "try $i: exit $rc: $(cat err)"; return 1; }
        [ ! -e finish-ran ] || { echo "try $i: finish() ran after the cancel"; return 1; }
    done
}
check rel_no_finish_after_cancel 'rel_no_finish_after_cancel "gen(rows=0) | probe()"'
check rel_no_finish_after_cancel_replicas 'rel_no_finish_after_cancel "gen(rows=0) | filter(fare > 1, workers=2) | probe()"'
# The first Ctrl-C waits for a stage deaf to cancels, the second ends the
# process at once. The target is untouched; the temporary stays (_exit
# runs no cleanup).
check rel_second_sigint_exits_at_once 'echo old > o.csv; start=$SECONDS
    $WEIR --plugin "$REL/probe.so" run -e "gen(rows=10) | stubborn() | write(\"o.csv\")" 2>err & pid=$!
    rel_wait_for 200 test -e busy || { cat "$REL/probe.log" err; exit 1; }
    kill -INT $pid; sleep 0.5
    kill -0 $pid 2>/dev/null || { echo "the first SIGINT did not wait for the stage"; exit 1; }
    kill -INT $pid; rel_stop $pid; rc=$?
    [ $rc = 130 ] || { echo "exit $rc"; exit 1; }
    [ $((SECONDS - start)) -lt 30 ] || { echo "the second SIGINT did not end it at once"; exit 1; }
    [ "$(cat o.csv)" = old ]'
# A closed stdout ends the run quietly, whatever writes to it.
rel_pipe_quiet() { # SPEC HEAD-ARGS: exit 0, nothing on stderr
    "$WEIR" run -e "$1" 2>err | head $2 >/dev/null
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && [ ! -s err ] || { echo "exit $rc: $(cat err)"; false; }
}
check rel_sigpipe_oneliner 'rel_pipe_quiet "gen(rows=0)" -1 &&
    [ "$($WEIR run -e "gen(rows=0)" | head -1)" = "$($WEIR run -e "gen(rows=1)" | head -1)" ]'
check rel_sigpipe_write_stdout 'rel_pipe_quiet "gen(rows=0) | write(\"-\")" -2'
check rel_sigpipe_jsonl 'rel_pipe_quiet "gen(rows=0) | to_jsonl()" "-c 10"'
check rel_sigpipe_zstd_bytes 'rel_pipe_quiet "gen(rows=0) | to_csv() | zstd(level=1, workers=2) | write(\"-\")" "-c 100"'
check rel_sigpipe_group_result 'rel_pipe_quiet "gen(rows=200000) | group(by=id, n=count())" -1'

# ---- faults: full disk, read errors --------------------------------------------------------
e rel_dev_full_rows 1 "stage 'write' \(<expr>:1:[0-9]+\): write '/dev/full': No space left on device" \
    '$WEIR run -e "gen(rows=1000) | write(\"/dev/full\")"'
e rel_dev_full_bytes 1 "stage 'write' \(<expr>:1:[0-9]+\): write '/dev/full': No space left on device" \
    '$WEIR run -e "gen(rows=1000) | to_csv() | zstd(level=1) | write(\"/dev/full\")"'
e rel_dev_full_stdout 1 "stage 'write' \(<expr>:1:1\): writing to stdout: No space left on device" \
    '$WEIR run -e "gen(rows=1000)" >/dev/full'
e rel_read_directory 1 "stage 'read' \(<expr>:1:1\): \.: Is a directory" \
    '$WEIR run -e "read(\".\") | csv() | write(\"o.csv\")"'
e rel_read_io_error 1 "stage 'read' \(<expr>:1:1\): /proc/self/mem: Input/output error" \
    '$WEIR run -e "read(\"/proc/self/mem\") | write(\"o.bin\")"'
e rel_read_glob_matches_nothing 1 "stage 'read' \(<expr>:1:1\): no file matches 'nothing-\*\.csv'" \
    '$WEIR run -e "read(\"nothing-*.csv\") | csv() | write(\"o.csv\")"'

# ---- faults: damaged .zst ----------------------------------------------------------------------
"$WEIR" gen trips --rows 3000 --seed 7 -o "$REL/t.csv.zst" 2>/dev/null
"$WEIR" gen trips --rows 3000 --seed 7 -o "$REL/t.csv" 2>/dev/null
rel_zsize=$(wc -c <"$REL/t.csv.zst")
head -c $((rel_zsize - 100)) "$REL/t.csv.zst" >"$REL/cut.csv.zst"
head -c 20 "$REL/t.csv.zst" >"$REL/header_only.csv.zst"
cp "$REL/t.csv.zst" "$REL/flipped.csv.zst"
printf '\377\377\377\377\377\377\377\377' |
    dd of="$REL/flipped.csv.zst" bs=1 seek=$((rel_zsize / 2)) conv=notrunc 2>/dev/null
cp "$REL/t.csv.zst" "$REL/badsum.csv.zst"
printf '\0\0\0\0' | dd of="$REL/badsum.csv.zst" bs=1 seek=$((rel_zsize - 4)) conv=notrunc 2>/dev/null
{ cat "$REL/t.csv.zst"; printf 'junk'; } >"$REL/trailing.csv.zst"
# A frame that declares 10 bytes and holds 5, ending in an empty last
# block: libzstd's streaming decoder misses that when the frame arrives in
# pieces (found by tests/fuzz/fuzz_zstd.c).
printf '\050\265\057\375\040\012\050\000\000hello\001\000\000' >"$REL/short.zst"

e rel_zst_truncated 1 "stage 'read' \(<expr>:1:1\): .*/cut\.csv\.zst: truncated zstd frame at end of input \(byte $((rel_zsize - 100))\)" \
    '$WEIR run -e "read(\"$REL/cut.csv.zst\") | csv() | write(\"o.csv\")"'
e rel_zst_header_only 1 ".*/header_only\.csv\.zst: truncated zstd frame at end of input \(byte 20\)" \
    '$WEIR run -e "read(\"$REL/header_only.csv.zst\") | write(\"o.bin\")"'
e rel_zst_corrupt 1 "stage 'read' \(<expr>:1:1\): .*/flipped\.csv\.zst: corrupt zstd data at byte [0-9]+: " \
    '$WEIR run -e "read(\"$REL/flipped.csv.zst\") | csv() | write(\"o.csv\")"'
# The offset is where the decoder stopped: a frame that fits one read is
# decoded in one step, so its damage is reported at the frame's start.
e rel_zst_bad_checksum 1 ".*/badsum\.csv\.zst: corrupt zstd data at byte [0-9]+: Restored data doesn.t match checksum" \
    '$WEIR run -e "read(\"$REL/badsum.csv.zst\") | write(\"o.bin\")"'
e rel_zst_trailing_junk 1 ".*/trailing\.csv\.zst: (corrupt zstd data at byte [0-9]+|truncated zstd frame at end of input)" \
    '$WEIR run -e "read(\"$REL/trailing.csv.zst\") | csv() | count()"'
e rel_zst_short_frame_in_pieces 1 "stage 'read' \(<expr>:1:1\): stdin: corrupt zstd data at byte 17: the frame holds 5 bytes, its header says 10" \
    '{ head -c 12 "$REL/short.zst"; sleep 0.3; tail -c +13 "$REL/short.zst"; } | $WEIR run -e "read(\"-\") | write(\"o.bin\")"'
e rel_zst_short_frame_whole 1 ".*/short\.zst: corrupt zstd data at byte 0: " \
    '$WEIR run -e "read(\"$REL/short.zst\") | write(\"o.bin\")"'
check rel_zst_damage_keeps_target 'echo old > o.csv
    $WEIR run -e "read(\"$REL/cut.csv.zst\") | csv() | write(\"o.csv\")" 2>/dev/null
    [ $? = 1 ] && [ "$(cat o.csv)" = old ] && rel_only o.csv'
check rel_zst_intact_reads_whole 'out=$($WEIR run -e "read(\"$REL/t.csv.zst\") | csv() | count()") &&
    [ "$out" = 3000 ] && $WEIR run -e "read(\"$REL/t.csv.zst\") | write(\"t.csv\")" && cmp t.csv "$REL/t.csv"'

# ---- CSV endings: no final newline is fine; an open quote is an error ------------------------------
t rel_csv_no_final_newline 0 'printf "a,b\n1,2" | $WEIR run -e "read(\"-\") | csv()"'
t rel_csv_no_final_newline_quoted 0 'printf "a,b\n1,\"x\ny\"" | $WEIR run -e "read(\"-\") | csv() | to_jsonl()"'
t rel_csv_crlf_no_final_newline 0 'printf "a,b\r\n1,2\r\n3,4" | $WEIR run -e "read(\"-\") | csv()"'
t rel_csv_no_final_newline_zst 0 'printf "a,b\n1,2\n3,4" | zstd -q -c | $WEIR run -e "read(\"-\") | csv() | count()"'
e rel_csv_ends_in_quote 1 "stage 'csv' \(<expr>:1:13\): <stdin> line 3 \(byte 8\): unterminated quoted field" \
    'printf "a,b\n1,2\n3,\"open\nmore\n" | $WEIR run -e "read(\"-\") | csv() | count()"'
printf 'a,b\n1,2\n3,"open\nmore\n' | zstd -q -c >"$REL/open_quote.csv.zst"
e rel_csv_ends_in_quote_zst 1 "stage 'csv' \(<expr>:1:[0-9]+\): .*/open_quote\.csv\.zst line 3 \(byte 8\): unterminated quoted field" \
    '$WEIR run -e "read(\"$REL/open_quote.csv.zst\") | csv() | write(\"o.csv\")"'
e rel_csv_only_a_quote 1 "stage 'csv' \(<expr>:1:13\): <stdin> line 1 \(byte 0\): unterminated quoted field" \
    'printf "\"" | $WEIR run -e "read(\"-\") | csv() | count()"'
mkdir -p "$REL/two"
printf 'a,b\n1,2\n' >"$REL/two/1.csv"
printf 'a,b\n3,"4\n' >"$REL/two/2.csv"
e rel_csv_open_quote_in_second_file 1 "stage 'csv' \(<expr>:1:[0-9]+\): .*/two/2\.csv line 2 \(byte 4\): unterminated quoted field" \
    '$WEIR run -e "read(\"$REL/two/*.csv\") | csv() | write(\"o.csv\")"'

# ---- hostile input: bytes pass through as they are -----------------------------------------------
printf 'a,b\nx\0y,p\0q\n\0,\0\0\n' >"$REL/nul.csv"
printf 'a,b\n\377\376,\303\050\n\355\240\200,\364\220\200\200\nok,\342\202\254\n' >"$REL/bad_utf8.csv"
check rel_nul_bytes_roundtrip '$WEIR run -e "read(\"$REL/nul.csv\") | csv() | to_csv() | write(\"o.csv\")" &&
    cmp o.csv "$REL/nul.csv" &&
    $WEIR run -e "read(\"$REL/nul.csv\") | csv() | filter(len(a) == 3) | write(\"p.csv\")" &&
    [ "$(od -An -c p.csv | tr -s " ")" = "$(printf "a,b\nx\0y,p\0q\n" | od -An -c | tr -s " ")" ]'
check rel_invalid_utf8_roundtrip '$WEIR run -e "read(\"$REL/bad_utf8.csv\") | csv() | write(\"o.csv\")" &&
    cmp o.csv "$REL/bad_utf8.csv" &&
    $WEIR run -e "read(\"$REL/bad_utf8.csv\") | csv() | compute(u = upper(a), n = len(b)) | select(u, n)" > o2.csv &&
    [ "$(od -An -tx1 o2.csv | tr -d " \n")" = "$(printf "u,n\n\377\376,2\n\355\240\200,4\nOK,3\n" | od -An -tx1 | tr -d " \n")" ]'
# JSON cannot hold raw bytes: NUL is \u0000, an invalid byte is \u00XX.
t rel_jsonl_nul_and_invalid_utf8 0 'cat "$REL/nul.csv" "$REL/bad_utf8.csv" | $WEIR run -e "read(\"-\") | csv(header=false) | to_jsonl()"'

# ---- hostile input: sizes ---------------------------------------------------------------------------
e rel_max_field_small 1 "stage 'csv' \(<expr>:1:13\): <stdin> line 2 \(byte 4\): field larger than max_field \(10 bytes\)" \
    'printf "a,b\n1,12345678901\n" | $WEIR run -e "read(\"-\") | csv(max_field=10) | count()"'
e rel_max_field_small_quoted 1 "stage 'csv' \(<expr>:1:13\): <stdin> line 2 \(byte 4\): field larger than max_field \(10 bytes\)" \
    'printf "a,b\n1,\"1234\n678901\"\n" | $WEIR run -e "read(\"-\") | csv(max_field=10) | count()"'
t rel_max_field_exact 0 'printf "a,b\n1,1234567890\n2,\"12\"\"45\n789\"\n" | $WEIR run -e "read(\"-\") | csv(max_field=10) | count()"'
# rel_maxrss CMD…: run CMD (stdout to ./out, stderr to ./err); its exit
# code goes to ./rc and its peak RSS in KiB to stdout.
rel_maxrss() {
    python3 -c 'import resource, subprocess, sys
with open("out", "wb") as o, open("err", "wb") as e:
    rc = subprocess.call(sys.argv[1:], stdout=o, stderr=e)
open("rc", "w").write("%d\n" % rc)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
# Under AddressSanitizer RSS says more about the sanitizer than about weir.
rel_rss_max=$((256 << 10))
grep -qa __asan_init "$WEIR" 2>/dev/null && rel_rss_max=$((4 << 20))
# One field of 65 MiB against the default max_field (64 MiB): a clear
# error, found before the field is held whole (RSS well under the field
# size plus a copy). Also when an unclosed quote swallows the file.
rel_big_field() { # FILE QUOTE: a header, then "1," QUOTE and 65 MiB of x
    { printf 'a,b\n1,%s' "$2"; head -c $((65 << 20)) /dev/zero | tr '\0' x; printf '\n'; } >"$1"
}
check rel_field_65mib_default 'rel_big_field big.csv ""
    rss=$(rel_maxrss $WEIR run -e "read(\"big.csv\") | csv() | count()"); rc=$(cat rc)
    [ $rc = 1 ] && [ ! -s out ] || { echo "exit $rc"; exit 1; }
    grep -q "^weir: stage .csv. (<expr>:1:[0-9]*): big.csv line 2 (byte 4): field larger than max_field (67108864 bytes)$" err || { cat err; exit 1; }
    echo "max RSS $rss KiB"; [ "$rss" -lt $rel_rss_max ]'
check rel_field_65mib_open_quote 'rel_big_field big.csv "\""
    rss=$(rel_maxrss $WEIR run -e "read(\"big.csv\") | csv() | count()"); rc=$(cat rc)
    [ $rc = 1 ] && grep -q "big.csv line 2 (byte 4): field larger than max_field (67108864 bytes)$" err || { echo "exit $rc"; cat err; exit 1; }
    echo "max RSS $rss KiB"; [ "$rss" -lt $rel_rss_max ]'
check rel_field_63mib_fits 'rm -f big.csv; { printf "a,b\n1,"; head -c $((63 << 20)) /dev/zero | tr "\0" x; printf "\n2,y\n"; } >big.csv
    out=$($WEIR run -e "read(\"big.csv\") | csv() | filter(len(b) > 1) | count()") && [ "$out" = 1 ]'
# 1 million columns: a header and one row (9 MB of CSV).
check rel_million_columns 'seq 1000000 | sed "s/^/c/" | paste -sd, >wide.csv && seq 1000000 | paste -sd, >>wide.csv
    [ "$($WEIR run -e "read(\"wide.csv\") | csv() | count()")" = 1 ] &&
    $WEIR run -e "read(\"wide.csv\") | csv() | write(\"back.csv\")" && cmp wide.csv back.csv &&
    [ "$($WEIR run -e "read(\"wide.csv\") | csv() | select(c1000000, c1) | to_csv()")" = "$(printf "c1000000,c1\n1000000,1")" ] &&
    [ "$($WEIR run -e "read(\"wide.csv\") | csv() | filter(c999999 == 999999) | count()")" = 1 ]'

# ---- hostile specs: huge and deep ----------------------------------------------------------------------
{
    printf 'gen(rows=1)'
    for _ in $(seq 10000); do printf ' | select(id)'; done
    printf ' | count()\n'
} >"$REL/stages10k.weir"
rel_deep() { # N OPEN CORE CLOSE: OPEN×N CORE CLOSE×N
    local i s=""
    for ((i = 0; i < $1; i++)); do s+=$2; done
    s+=$3
    for ((i = 0; i < $1; i++)); do s+=$4; done
    printf '%s' "$s"
}
printf 'gen(rows=1) | filter(%s) | count()\n' "$(rel_deep 1000 '(' 'fare > 1' ')')" >"$REL/parens1000.weir"
printf '%s | count()\n' "$(rel_deep 1000 '(' 'gen(rows=1)' ')')" >"$REL/stage_parens1000.weir"
printf 'gen(rows=1) | compute(x = %s) | count()\n' "$(rel_deep 1000 '[' '1' ']')" >"$REL/brackets1000.weir"
printf 'gen(rows=1) | compute(x = %s) | count()\n' "$(rel_deep 1000 'lower(' 'vendor' ')')" >"$REL/calls1000.weir"
printf 'gen(rows=1) | filter(%s) | count()\n' "$(rel_deep 100000 '!' 'true' '')" >"$REL/not100k.weir"
awk 'BEGIN { printf "gen(rows=1) | compute(x = 1"; for (i = 0; i < 1000000; i++) printf " + 1"; print ") | count()" }' >"$REL/sum1m.weir"
printf 'gen(rows=1) | compute(x = %s) | count()\n' "$(rel_deep 999 '(' '1' ')')" >"$REL/parens999.weir"
e rel_spec_10000_stages 2 "the graph needs [0-9]+ worker threads \(one per stage replica\); weir runs at most 4096: use fewer stages or workers" \
    '$WEIR run "$REL/stages10k.weir"'
e rel_spec_10000_stages_check 2 "the graph needs [0-9]+ worker threads" '$WEIR check "$REL/stages10k.weir"'
e rel_spec_1000_parens 2 ".*/parens1000\.weir:1:[0-9]+: expression nested too deeply \(over 200 levels\)" \
    '$WEIR run "$REL/parens1000.weir"'
e rel_spec_1000_parens_expr 2 "<expr>:1:[0-9]+: expression nested too deeply \(over 200 levels\)" \
    '$WEIR run -e "$(cat "$REL/parens1000.weir")"'
e rel_spec_1000_parens_around_stage 2 ".*/stage_parens1000\.weir:1:1: expected a stage, found '\('" \
    '$WEIR check "$REL/stage_parens1000.weir"'
e rel_spec_1000_brackets 2 ".*/brackets1000\.weir:1:[0-9]+: expression nested too deeply" \
    '$WEIR run "$REL/brackets1000.weir"'
e rel_spec_1000_nested_calls 2 ".*/calls1000\.weir:1:[0-9]+: expression nested too deeply" \
    '$WEIR run "$REL/calls1000.weir"'
e rel_spec_100000_nots 2 ".*/not100k\.weir:1:[0-9]+: expression nested too deeply" \
    '$WEIR run "$REL/not100k.weir"'
# A flat chain is a tree as deep as it is long: copying a million-deep tree
# overflowed the stack before the parser bounded its depth.
e rel_spec_sum_of_1000000_terms 2 ".*/sum1m\.weir:1:[0-9]+: expression nested too deeply \(over 1000 levels\)" \
    '$WEIR run "$REL/sum1m.weir"'
e rel_spec_nul_byte 2 "s\.weir: the spec holds a NUL byte" \
    'printf "gen(rows=1)\0 | count()\n" >s.weir; $WEIR run s.weir; rc=$?; rm s.weir; exit $rc'

# ---- arithmetic at the edges: the documented results (weir.h section 6) ------------------------------
# a: 1/0 is null; b: int64 overflow goes on in floating point; c: x % 0 is
# null.
t rel_arith_div_zero_overflow 0 '$WEIR run -e "gen(rows=1) | compute(a = 1/0, b = 9223372036854775807 + 1, c = 7 % 0) | select(a, b, c)"'
t rel_arith_edges 0 '$WEIR run -e "gen(rows=1) | compute(
    neg_min = -9223372036854775807 - 1, neg_min_sub = -9223372036854775807 - 2,
    min_div = (-9223372036854775807 - 1) / -1, min_mod = (-9223372036854775807 - 1) % -1,
    min_neg = -(-9223372036854775807 - 1), min_abs = abs(-9223372036854775807 - 1),
    mul_over = 3037000500 * 3037000500, mul_fits = 3037000499 * 3037000499,
    zero_div_zero = 0 / 0, float_mod_zero = 1.5 % 0, float_mod = 7.5 % 2,
    neg_mod = -7 % 3, inf = 1e308 * 10, text_div = \"x\" / 2, empty_add = \"\" + 1,
    big_text = \"9223372036854775808\" + 0, int_of_big = int(1e300), round_big = round(1e300)
    ) | drop(id, vendor, pickup_at, dropoff_at, passenger_count, distance, fare, tip, payment, zone, notes) | to_jsonl()"'
