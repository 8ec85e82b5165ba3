# Plugin cases, sourced by cli_test.sh: stages loaded from a shared object
# with --plugin FILE (any command) or load("FILE") in a spec. A plugin stage
# is first-class: listed, documented, explained, replicated. Every way a
# plugin can fail to load is one line on stderr and exit 2.
#
# The plugins are built here from tests/plugins/*.c and the example
# stages/examples/collatz.c, against weir.h alone, as a user would.

PLUG=$scratch/plugins
mkdir -p "$PLUG"
plugin_build_log=$PLUG/build.log
: >"$plugin_build_log"
for src in "$top"/tests/plugins/*.c "$top"/stages/examples/collatz.c; do
    name=$(basename "$src" .c)
    cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -I"$top/pipeline" \
        -o "$PLUG/$name.so" "$src" >>"$plugin_build_log" 2>&1 ||
        echo "cannot build $src" >>"$plugin_build_log"
done
printf 'not a shared object\n' >"$PLUG/junk.so"
printf '# a plugin that is not there\nload("./nope.so")\ngen(rows=1) | count()\n' >"$PLUG/missing.weir"
check plugin_build '! grep -q "cannot build" "$PLUG/build.log" || { cat "$PLUG/build.log"; false; }'

# ---- load and run --------------------------------------------------------------
t plugin_run 0 '$WEIR --plugin "$PLUG/shout.so" run -e "read(\"$DATA/kv.csv\") | shout() | write(\"-\")"'
t plugin_run_option_equals 0 '$WEIR --plugin="$PLUG/shout.so" run -e "read(\"$DATA/kv.csv\") | shout() | write(\"-\")"'
t plugin_run_option_after_command 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | shout() | write(\"-\")" --plugin "$PLUG/shout.so"'
t plugin_load_in_spec 0 'cp "$PLUG/shout.so" . &&
    printf "load(\"./shout.so\")\nread(\"%s/kv.csv\") | shout() | write(\"-\")\n" "$DATA" >s.weir &&
    $WEIR run s.weir'
t plugin_load_bare_name 0 'cp "$PLUG/shout.so" . &&
    $WEIR run -e "load(\"shout.so\"); read(\"$DATA/kv.csv\") | shout() | write(\"-\")"'
t plugin_load_then_check 0 'cp "$PLUG/shout.so" . &&
    $WEIR check -e "load(\"shout.so\"); read(\"$DATA/kv.csv\") | shout() | write(\"o.csv\")"'
t plugin_two_stages 0 '$WEIR --plugin "$PLUG/collatz.so" run -e "numbers(count=10) | collatz(n, workers=3)"'
t plugin_rows_through_builtins 0 '$WEIR --plugin "$PLUG/collatz.so" run -e "numbers(count=100000) | collatz(n, workers=4) | filter(steps >= 330) | select(steps, n)"'
check plugin_stdin_columns_at_run_time 'printf "x,n\na,6\nb,7\nc,x\n" >in.csv &&
    out=$($WEIR --plugin "$PLUG/collatz.so" run -e "read(\"-\") | csv() | collatz(n, as=len)" <in.csv) &&
    [ "$out" = "$(printf "x,n,len\na,6,8\nb,7,16\nc,x,")" ]'

# ---- first-class: listed, documented, explained, replicated --------------------------
check plugin_listed_by_stages '
    $WEIR --plugin "$PLUG/shout.so" stages | grep -q "^  shout *bytes *-> bytes *upper-case ASCII letters (a test plugin) \[parallel\]$" &&
    ! $WEIR stages | grep -q "^  shout "'
check plugin_listed_after_builtins '
    $WEIR --plugin "$PLUG/collatz.so" stages | awk "/^  [a-z_]+ / {print \$1}" | tail -2 | tr "\n" " " | grep -qx "numbers collatz "'
t plugin_stages_page 0 '$WEIR --plugin "$PLUG/collatz.so" stages collatz'
t plugin_stages_page_source 0 '$WEIR --plugin "$PLUG/collatz.so" stages numbers'
# explain's format grows (memory estimates, …): check the lines that say
# what a plugin stage became, not the whole text.
check plugin_explain_replicas '
    $WEIR --plugin "$PLUG/shout.so" explain -e "read(\"$DATA/kv.csv\") | shout(workers=3) | write(\"o.csv\")" >out &&
    grep -qx "shout (<expr>:1:26): bytes -> bytes, 3 replicas, ordered collector" out &&
    grep -qx "    -> shout: round-robin, 3 channels of 16 batches" out'
check plugin_explain_columns '
    $WEIR --plugin "$PLUG/collatz.so" explain --threads 2 -e "numbers(count=5) | collatz(n, as=len, workers=2) | write(\"o.csv\")" >out &&
    grep -qx "numbers (<expr>:1:1): none -> rows" out &&
    grep -qx "collatz (<expr>:1:20): rows -> rows, 2 replicas, ordered collector" out &&
    grep -qx "    columns: n, len" out'
check plugin_explain_unordered '
    $WEIR --plugin "$PLUG/shout.so" explain -e "read(\"$DATA/kv.csv\") | shout(workers=2, ordered=false) | write(\"o.csv\")" >out &&
    grep -qx "shout (<expr>:1:26): bytes -> bytes, 2 replicas, unordered collector" out'
check plugin_explain_dot '
    $WEIR --plugin "$PLUG/shout.so" explain --dot -e "read(\"$DATA/kv.csv\") | shout(workers=2) | write(\"o.csv\")" | grep -q shout'
check plugin_replicas_keep_order '
    $WEIR run -e "gen(rows=20000, seed=3) | to_csv() | write(\"g.csv\")" &&
    $WEIR --plugin "$PLUG/shout.so" run -e "read(\"g.csv\") | shout(workers=4) | write(\"s.csv\")" &&
    tr a-z A-Z <g.csv | cmp - s.csv'
check plugin_broadcast_shared_batches '
    $WEIR run -e "gen(rows=3000, seed=5) | to_csv() | write(\"g.csv\")" &&
    printf "let b = read(\"g.csv\")\nb | shout(workers=2) | write(\"up.csv\")\nb | write(\"same.csv\")\n" >s.weir &&
    $WEIR --plugin "$PLUG/shout.so" run s.weir &&
    cmp g.csv same.csv && tr a-z A-Z <g.csv | cmp - up.csv'
e plugin_unknown_column 2 "stage 'collatz' \(<expr>:1:20\): unknown column 'x'" \
    '$WEIR --plugin "$PLUG/collatz.so" check -e "numbers(count=5) | collatz(x) | count()"'
e plugin_argument_checked 2 "<expr>:1:15: stage 'numbers': argument 'count' must be int, not \"ten\"" \
    '$WEIR --plugin "$PLUG/collatz.so" check -e "numbers(count=\"ten\") | count()"'
e plugin_plan_error 2 "stage 'numbers' \(<expr>:1:1\): count must be 0 or more, not -1" \
    '$WEIR --plugin "$PLUG/collatz.so" run -e "numbers(count=-1) | count()"'
e plugin_workers_on_serial_stage 2 "<expr>:1:26: stage 'numbers' cannot run in parallel \(workers=2\)$" \
    '$WEIR --plugin "$PLUG/collatz.so" check -e "numbers(count=5, workers=2) | count()"'
e plugin_stage_unknown_without_it 2 "<expr>:1:[0-9]+: unknown stage 'shout'" \
    '$WEIR run -e "read(\"$DATA/kv.csv\") | shout() | write(\"-\")"'

# ---- errors: one line, exit 2, with every command ----------------------------------------
e plugin_missing_file 2 "cannot load plugin: [^ ]*/nope\.so: cannot open shared object file: No such file or directory$" \
    '$WEIR --plugin "$PLUG/nope.so" stages'
for c in run check explain gen; do
    e "plugin_missing_file_$c" 2 "cannot load plugin: [^ ]*/nope\.so: cannot open shared object file" \
        "\$WEIR --plugin \"\$PLUG/nope.so\" $c -e 'gen(rows=1) | count()'"
done
e plugin_missing_file_load 2 "<expr>:1:6: cannot load plugin: \./nope\.so: cannot open shared object file: No such file or directory$" \
    '$WEIR run -e "load(\"nope.so\"); gen(rows=1) | count()"'
e plugin_missing_file_load_check 2 "[^ ]*/missing\.weir:2:6: cannot load plugin: \./nope\.so: cannot open shared object file" \
    '$WEIR check "$PLUG/missing.weir"'
e plugin_not_a_shared_object 2 "cannot load plugin: [^ ]*/junk\.so: (invalid ELF header|file too short)$" \
    '$WEIR --plugin "$PLUG/junk.so" stages'
e plugin_no_init 2 "[^ ]*/noinit\.so is not a weir plugin: it does not export weir_plugin_init \(define it with WEIR_PLUGIN\(init\) from weir\.h\)$" \
    '$WEIR --plugin "$PLUG/noinit.so" stages'
e plugin_no_abi 2 "[^ ]*/noabi\.so is not a weir plugin: it does not export weir_plugin_abi \(define it with WEIR_PLUGIN\(init\) from weir\.h\)$" \
    '$WEIR --plugin "$PLUG/noabi.so" run -e "gen(rows=1) | count()"'
e plugin_no_init_load 2 "<expr>:1:6: [^ ]*/noinit\.so is not a weir plugin: it does not export weir_plugin_init" \
    '$WEIR run -e "load(\"$PLUG/noinit.so\"); gen(rows=1) | count()"'
e plugin_wrong_abi 2 "[^ ]*/badabi\.so was built for stage ABI 999; this weir \([0-9]+\.[0-9]+\.[0-9]+\) has ABI [0-9]+: rebuild the plugin against this weir\.h$" \
    '$WEIR --plugin "$PLUG/badabi.so" stages'
e plugin_wrong_abi_load 2 "<expr>:1:6: [^ ]*/badabi\.so was built for stage ABI 999; this weir" \
    '$WEIR check -e "load(\"$PLUG/badabi.so\"); gen(rows=1) | count()"'
e plugin_init_fails 2 "[^ ]*/failinit\.so: weir_plugin_init failed: invalid argument$" \
    '$WEIR --plugin "$PLUG/failinit.so" stages'
e plugin_unresolved_symbol 2 "cannot load plugin: [^ ]*/unresolved\.so: undefined symbol: weir_no_such_function$" \
    '$WEIR --plugin "$PLUG/unresolved.so" stages'
e plugin_option_needs_file 2 "option '--plugin' needs a file$" '$WEIR stages --plugin'
e plugin_load_takes_string 2 "<expr>:1:6: load\(\) takes the plugin's path as a string$" \
    '$WEIR check -e "load(shout); gen(rows=1) | count()"'
check plugin_failed_load_runs_nothing '
    ! $WEIR run -e "gen(rows=5) | write(\"o.csv\")
load(\"$PLUG/badabi.so\")" 2>/dev/null && [ ! -e o.csv ]'
