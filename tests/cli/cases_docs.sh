# Documentation cases, sourced by cli_test.sh: the man pages render without
# warnings and agree with the live binary — every option that `weir --help`
# and `weir COMMAND --help` print is in docs/weir.1 (in that command's
# section), every stage `weir stages` lists has a section in
# docs/weir-spec.5 headed by its call as `weir stages NAME` shows it and
# naming each of its arguments, and every environment variable the code
# reads is in weir.1's ENVIRONMENT.
#
# When one fails after a change to the CLI or a stage: update the man page.

DOCS=$top/docs

# The text of a roff file with the escapes the pages use turned back into
# the characters they stand for, so it can be compared with --help output.
docs_plain() {
    sed -e 's/\\-/-/g' -e 's/\\\[u2026\]/…/g' -e 's/\\(dq/"/g' \
        -e "s/\\\\(aq/'/g" -e 's/\\(ga/`/g' -e 's/\\&//g' -e 's/\\f[BIRP]//g' \
        -e 's/\\c$//' -e 's/\\e/\\/g' "$1"
}

# The options a help text names: --long and -x tokens (not -Tsvg, Ctrl-C…).
docs_options() {
    grep -oE '(^|[^A-Za-z0-9_.-])--?[A-Za-z][A-Za-z0-9-]*' |
        sed -E 's/^[^-]*//' | grep -E '^(--[A-Za-z]|-[A-Za-z]$)' | sort -u
}

# Lines of section `.SS "weir CMD …` in plain weir.1, up to the next .SS/.SH.
docs_cmd_section() {
    docs_plain "$DOCS/weir.1" | awk -v cmd="$1" '
        /^\.S[SH]/ { if (on) exit; if (index($0, ".SS \"weir " cmd " ") == 1 || $0 == ".SS \"weir " cmd "\"") on = 1 }
        on { print }'
}

# docs_has_word TEXT-FILE WORD: WORD appears, not as part of a longer option.
docs_has_word() {
    grep -qE -- "(^|[^A-Za-z0-9-])$2([^A-Za-z0-9-]|\$)" "$1"
}

docs_render() { # FILE: groff and (if installed) mandoc find nothing to say
    groff -man -Tutf8 -ww -z "$1" 2>render.err || return 1
    if command -v mandoc >/dev/null 2>&1; then
        mandoc -Tlint -W warning "$1" >>render.err 2>&1 || true
    fi
    if [ -s render.err ]; then cat render.err; return 1; fi
}

check docs_weir1_renders 'docs_render "$DOCS/weir.1"'
check docs_weir_spec5_renders 'docs_render "$DOCS/weir-spec.5"'
check docs_man_l_renders '
    command -v man >/dev/null || exit 0
    MANWIDTH=80 man -l "$DOCS/weir.1" 2>err >out && [ ! -s err ] && grep -q "EXIT STATUS" out &&
    MANWIDTH=80 man -l "$DOCS/weir-spec.5" 2>err >out && [ ! -s err ] && grep -q "EXPRESSIONS" out'

check docs_version_in_pages '
    v=$($WEIR --version | sed "s/^weir //") &&
    grep -q "^\.TH WEIR 1 [0-9-]* \"weir $v\"" "$DOCS/weir.1" &&
    grep -q "^\.TH WEIR-SPEC 5 [0-9-]* \"weir $v\"" "$DOCS/weir-spec.5" ||
    { echo "the .TH lines do not say weir $v"; false; }'

# Every command `weir --help` lists has a section; every option of
# `weir COMMAND --help` is in it; every option of `weir --help` is in the page.
check docs_every_command_and_option '
    docs_plain "$DOCS/weir.1" >plain
    $WEIR --help >top.help
    bad=0
    for opt in $(docs_options <top.help); do
        docs_has_word plain "$opt" || { echo "weir --help: $opt is not in weir.1"; bad=1; }
    done
    cmds=$(awk "/^commands:/ {on=1; next} on && /^\$/ {exit} on {print \$1}" top.help)
    [ -n "$cmds" ] || { echo "no commands found in weir --help"; exit 1; }
    for c in $cmds; do
        docs_cmd_section "$c" >sec
        if [ ! -s sec ]; then echo "weir.1 has no section .SS \"weir $c ...\""; bad=1; continue; fi
        $WEIR "$c" --help >help 2>&1 || { echo "weir $c --help failed"; bad=1; continue; }
        for opt in $(docs_options <help); do
            docs_has_word sec "$opt" || { echo "weir $c --help: $opt is not in weir.1 under weir $c"; bad=1; }
        done
    done
    exit $bad'

check docs_exit_status '
    docs_plain "$DOCS/weir.1" | awk "/^\.SH EXIT STATUS/ {on=1; next} /^\.SH/ {on=0} on" >sec &&
    for code in 0 1 2 130 143; do
        grep -qx "\.B $code" sec || { echo "EXIT STATUS lacks $code"; exit 1; }
    done'

check docs_environment '
    docs_plain "$DOCS/weir.1" | awk "/^\.SH ENVIRONMENT/ {on=1; next} /^\.SH/ {on=0} on" >sec
    vars=$(grep -rhoE "getenv\(\"[A-Z_]+\"\)" "$top/pipeline" "$top/stages" "$top/cli" --include=*.c |
           sed -E "s/getenv\(\"([A-Z_]+)\"\)/\1/" | sort -u)
    [ -n "$vars" ] || { echo "found no getenv calls"; exit 1; }
    bad=0
    for v in $vars OMP_NUM_THREADS OMP_PROC_BIND OMP_PLACES; do
        docs_has_word sec "$v" || { echo "weir.1 ENVIRONMENT lacks $v"; bad=1; }
    done
    exit $bad'

# Every stage: a section under STAGES headed by the first line of
# `weir stages NAME`, naming each argument of its table.
check docs_every_stage_in_weir_spec5 '
    docs_plain "$DOCS/weir-spec.5" >plain
    stages=$($WEIR stages | awk "/^  [a-z_]+ / {print \$1}")
    [ -n "$stages" ] || { echo "weir stages listed nothing"; exit 1; }
    bad=0
    for s in $stages; do
        $WEIR stages "$s" >page
        sig=$(head -1 page)
        awk -v want="$sig" "
            /^\.S[SH]/ { if (on) exit; if (\$0 == \".SS\") { getline h; if (h == want) on = 1; next } }
            on { print }" plain >sec
        if [ ! -s sec ]; then
            echo "weir-spec.5 has no section headed \"$sig\" (.SS, then that line)"; bad=1; continue
        fi
        for a in $(awk "/^  arguments:/ {on=1; next} on && /^    [a-z_]+ / {print \$1}" page); do
            docs_has_word sec "$a" || { echo "weir-spec.5, $s: argument $a is not described"; bad=1; }
        done
    done
    exit $bad'

check docs_functions_in_weir_spec5 '
    docs_plain "$DOCS/weir-spec.5" >plain
    awk "/^\.SS Functions/ {on=1; next} /^\.S[SH]/ {on=0} on" plain >sec
    for f in lower upper len substr contains starts_with ends_with int float round abs coalesce concat if; do
        grep -qE "(^|[^a-z_])$f\(" sec || { echo "weir-spec.5 lacks the function $f()"; exit 1; }
    done
    # and the functions the expression engine knows are exactly these
    known=$(sed -n "/^} fns\[\] = {/,/^};/p" "$top/pipeline/expr.c" | grep -oE "\{\"[a-z_]+\"" | tr -d "{\"" | sort | tr "\n" " ")
    want="abs coalesce concat contains ends_with float if int len lower round starts_with substr upper "
    [ "$known" = "$want" ] || { echo "pipeline/expr.c has functions \"$known\"; weir-spec.5 documents \"$want\""; exit 1; }'
