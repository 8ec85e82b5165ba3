# CLI cases, sourced by cli_test.sh. Each line: t (golden stdout), e (an
# error: exit code, one-line message, nothing left behind), f (a file the
# previous case wrote), check (a property). $WEIR is the binary under test,
# $DATA the folder of small inputs; every case runs in its own empty folder.

# ---- the command itself -------------------------------------------------------
t version 0 '$WEIR --version'
t help 0 '$WEIR --help'
t usage_noargs 2 '$WEIR 2>/dev/null'
for c in run check explain stages gen; do
    t "help_$c" 0 "\$WEIR $c --help"
done
e unknown_command 2 "unknown command 'frob'" '$WEIR frob'
e run_no_spec 2 "run: no spec" '$WEIR run'
e run_unknown_option 2 "run: unknown option '--frob'" '$WEIR run --frob -e "gen() | count()"'
e bad_timeout 2 "run: --timeout takes a duration" '$WEIR run --timeout 5x -e "gen() | count()"'
e spec_file_missing 2 "cannot read spec 'nope.weir': No such file or directory" '$WEIR run nope.weir'

# ---- stages: the list and each stage's page, from the argument tables ------------
t stages 0 '$WEIR stages'
for s in $("$WEIR" stages | awk '/^  [a-z_]+ / {print $1}'); do
    t "stages_$s" 0 "\$WEIR stages $s"
done
e stages_unknown 2 "stages: no stage named 'frob'" '$WEIR stages frob'

# ---- every stage, byte for byte ----------------------------------------------------
t csv_roundtrip 0 '$WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | to_csv()"'
check csv_roundtrip_is_input_lf '
    $WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | to_csv() | write(\"o.csv\")" &&
    { tr -d "\r" < "$DATA/rfc.csv"; echo; } > want.csv && cmp o.csv want.csv'
t to_jsonl 0 '$WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | to_jsonl()"'
t oneliner_writes_csv 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv()"'
t filter 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1.5 || k == \"z\")"'
t filter_null 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | filter(v != 1)"'
t select 0 '$WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | select(amount, id)"'
t drop 0 '$WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | drop(note)"'
t rename 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | rename(key=k, value=v)"'
t compute 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | compute(double=v * 2, upper_k=upper(k), ratio=v / 4)"'
t head 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | head(2)"'
t sample 0 '$WEIR run -e "gen(rows=200, seed=7) | sample(0.05, seed=3) | select(id)"'
t count 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | count()"'
t gen 0 '$WEIR run -e "gen(rows=5, seed=1)"'
t merge 0 '$WEIR run -e "let a = read(\"$DATA/kv.csv\") | csv()
let b = read(\"$DATA/kv2.csv\") | csv()
merge(a, b) | count()"'
t concat 0 '$WEIR run -e "let a = read(\"$DATA/kv.csv\") | csv()
let b = read(\"$DATA/kv2.csv\") | csv()
concat(a, b)"'
t discard 0 '$WEIR run -e "gen(rows=1000) | discard()"'
t group 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | group(by=k, n=count(), vals=count(v), total=sum(v), avg=mean(v), lo=min(v), hi=max(v))"'
t group_unsorted 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | group(by=[k], sort=false, n=count(), workers=1)"'
t write_csv 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | write(\"o.csv\")"'
f write_csv.file o.csv
t write_jsonl 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | write(\"o.jsonl\")"'
f write_jsonl.file o.jsonl
t write_bytes 0 '$WEIR run -e "read(\"$DATA/rfc.csv\") | write(\"copy.bin\")"'
check write_bytes_identical 'cp "$DATA/rfc.csv" rfc.csv && $WEIR run -e "read(\"rfc.csv\") | write(\"copy.bin\")" && cmp rfc.csv copy.bin'
t glob_two_files 0 '$WEIR run -e "read(\"$DATA/kv*.csv\") | csv() | count()"'
t stdin 0 'printf "x,y\n1,2\n" | $WEIR run -e "read(\"-\") | csv() | select(y)"'

# ---- zstd in and out -------------------------------------------------------------------
check zst_written_by_weir_matches_csv '
    $WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | write(\"o.csv\")" &&
    $WEIR run -e "read(\"$DATA/rfc.csv\") | csv() | write(\"o.csv.zst\")" &&
    zstd -q -d -c o.csv.zst | cmp - o.csv'
check zstd_stage_multiframe_roundtrip '
    $WEIR run -e "gen(rows=20000) | to_csv() | zstd(level=1, workers=2) | write(\"g.zst\")" &&
    $WEIR run -e "gen(rows=20000) | to_csv() | write(\"g.csv\")" &&
    zstd -q -d -c g.zst | cmp - g.csv &&
    $WEIR run -e "read(\"g.zst\") | unzstd() | write(\"back.csv\")" 2>/dev/null ||
    $WEIR run -e "read(\"g.zst\") | write(\"back.csv\")" && cmp back.csv g.csv'
check read_single_frame_from_zstd_cli '
    cp "$DATA/kv.csv" kv.csv && zstd -q kv.csv -o kv.csv.zst &&
    $WEIR run -e "read(\"kv.csv.zst\") | csv() | write(\"o.csv\")" &&
    $WEIR run -e "read(\"kv.csv\") | csv() | write(\"p.csv\")" && cmp o.csv p.csv'
check read_multi_frame_from_zstd_cli '
    zstd -q -c "$DATA/kv.csv" > m.zst && printf "y,5\n" | zstd -q -c >> m.zst &&
    { cat "$DATA/kv.csv"; printf "y,5\n"; } > want.csv &&
    $WEIR run -e "read(\"m.zst\") | write(\"got.csv\")" && cmp got.csv want.csv'
check read_zstd_by_magic_not_name '
    zstd -q -c "$DATA/kv.csv" > disguised.csv &&
    $WEIR run -e "read(\"disguised.csv\") | csv() | count()" | grep -qx 6'

# ---- errors: exit code, one line naming the place, nothing left behind ---------------------
e err_syntax 2 "<expr>:1:14: expected" '$WEIR run -e "read(\"x.csv\" | csv()"'
e err_unknown_stage 2 "<expr>:1:1: unknown stage 'frob' \(see 'weir stages'\)" '$WEIR run -e "frob() | count()"'
e err_junk_after_chain 2 "<expr>:1:23: expected '\|', ';' or a new line, found a name" '$WEIR run -e "gen(rows=3) | count() frob()"'
e err_unknown_stage_chain 2 "<expr>:1:15: unknown stage 'frob'" '$WEIR run -e "gen(rows=3) | frob()"'
e err_unknown_argument 2 "<expr>:1:20: stage 'head' has no argument 'm'" '$WEIR run -e "gen(rows=3) | head(m=2)"'
e err_unknown_column 2 "stage 'select' \(<expr>:1:34\): unknown column 'nope' \(columns: k, v\)" '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | select(nope)"'
e err_unknown_column_filter 2 "stage 'filter' \(<expr>:1:34\): <expr>:1:41: unknown column 'vv' \(did you mean 'v'\?\)" '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | filter(vv > 1)"'
e err_bytes_into_rows 2 "<expr>:1:.*(expects rows|produces bytes)" '$WEIR run -e "read(\"$DATA/kv.csv\") | select(k)"'
check err_unused_output '
    printf "let t = gen(rows=3)\ngen(rows=2) | count()\n" > s.weir
    $WEIR run s.weir 2>err; rc=$?
    [ $rc = 2 ] && grep -q "^weir: s.weir:1:9: output of .gen. is never used" err'
e err_missing_input 1 ".*nope.csv.*No such file or directory" '$WEIR run -e "read(\"nope.csv\") | csv() | write(\"o.csv\")"'
e err_missing_output_dir 1 ".*nodir/o.csv.*No such file or directory" '$WEIR run -e "gen(rows=3) | write(\"nodir/o.csv\")"'
e err_ragged_csv 1 "stage 'csv' \(<expr>:1:.*\): .*ragged.csv line 3 \(byte 8\): expected 2 fields, found 3" '$WEIR run -e "read(\"$DATA/ragged.csv\") | csv() | write(\"o.csv\")"'
e err_unterminated_csv 1 ".*unterminated.csv line 2.*unterminated quoted field" '$WEIR run -e "read(\"$DATA/unterminated.csv\") | csv() | write(\"o.csv\")"'
e err_undefined_var 2 "<expr>:1:6: undefined variable '.input'" '$WEIR run -e "read(\$input) | csv() | count()"'
check check_ok 'out=$($WEIR check -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1) | count()") && [ "$out" = ok ]'
e check_unknown_column 2 ".*unknown column 'x'" '$WEIR check -e "read(\"$DATA/kv.csv\") | csv() | select(x) | count()"'
check check_keeps_target 'echo old > o.csv; $WEIR check -e "gen(rows=3) | write(\"o.csv\")" >/dev/null && [ "$(cat o.csv)" = old ]'
check failed_run_keeps_target '
    echo old > o.csv
    $WEIR run -e "read(\"$DATA/ragged.csv\") | csv() | write(\"o.csv\")" 2>/dev/null
    [ $? = 1 ] && [ "$(cat o.csv)" = old ] && [ "$(ls -A | tr "\n" " ")" = "o.csv " ]'

# ---- cancellation ------------------------------------------------------------------------------
t endless_head 0 'timeout 20 $WEIR run -e "gen(rows=0) | head(5) | select(id, payment)"'
check sigint_removes_outputs '
    $WEIR run -e "gen(rows=0) | write(\"big.csv\")" & pid=$!
    sleep 1; kill -INT $pid; wait $pid; rc=$?
    [ $rc = 130 ] && [ -z "$(ls -A)" ]'
check sigterm_exits_143 '
    $WEIR run -e "gen(rows=0) | write(\"big.csv\")" 2>/dev/null & pid=$!
    sleep 0.5; kill -TERM $pid; wait $pid; rc=$?
    [ $rc = 143 ] && [ -z "$(ls -A)" ]'
e timeout_deadline 1 "deadline passed" 'timeout 20 $WEIR run --timeout 1s -e "gen(rows=0) | write(\"big.csv\")"'
check closed_pipe_is_quiet '
    $WEIR run -e "gen(rows=0) | to_csv()" 2>err | head -1 >/dev/null
    [ "${PIPESTATUS[0]}" = 0 ] && [ ! -s err ]'

# ---- explain -------------------------------------------------------------------------------------
t explain 0 '$WEIR explain --threads 2 -e "read(\"$DATA/kv.csv\") | csv() | filter(v > 1, workers=2) | write(\"o.csv\")"'
t explain_dot 0 '$WEIR explain --dot --threads 2 -e "let t = read(\"$DATA/kv.csv\") | csv()
t | filter(v > 1, workers=2) | write(\"o.csv\")
t | count()"'
check explain_dot_renders '
    command -v dot >/dev/null || { echo "graphviz missing: make deps installs it"; exit 1; }
    $WEIR explain --dot --threads 2 -e "gen(rows=5) | filter(fare > 1, workers=2) | count()" | dot -Tsvg > g.svg &&
    grep -q "<svg" g.svg && grep -q "filter" g.svg'

# ---- example specs ---------------------------------------------------------------------------------
t example_trips 0 '$WEIR run "$DATA/../../../datasets/examples/trips.weir" --var input="$DATA/../../../datasets/sample/trips-1k.csv" --var out=big.csv'
f example_trips.big big.csv
t example_first_rows 0 '$WEIR run "$DATA/../../../datasets/examples/first_rows.weir" --var input="$DATA/../../../datasets/sample/trips-1k.csv"'
t example_sample 0 '$WEIR run "$DATA/../../../datasets/examples/sample.weir" --var out=s.csv'
f example_sample.file s.csv
check example_zstd_roundtrip '
    $WEIR run "$DATA/../../../datasets/examples/zstd_roundtrip.weir" --var input="$DATA/../../../datasets/sample/trips-1k.csv" --var out=copy.csv &&
    cmp copy.csv "$DATA/../../../datasets/sample/trips-1k.csv"'
t example_fan_in 0 '$WEIR run "$DATA/../../../datasets/examples/fan_in.weir" --var out=two.csv'
f example_fan_in.file two.csv
check examples_all_check 'for s in "$DATA"/../../../datasets/examples/*.weir; do
    $WEIR check "$s" --var input=x.csv --var out=o.csv >/dev/null || exit 1; done'

# ---- group: exact decimal sums --------------------------------------------------------------------
t group_exact_sums 0 'printf "k,v\na,0.1\na,0.2\nb,-1.50\nb,1.5\nc,1e2\nc,0.1\nd,12345678901234567890.25\nd,1\n" | $WEIR run -e "read(\"-\") | csv() | group(by=k, s=sum(v), m=mean(v), lo=min(v))"'
