#!/usr/bin/env bash
# End-to-end tests of the real `weir` binary: each case runs a command in a
# scratch directory and compares its exit code, its stdout byte for byte with
# tests/cli/golden/NAME.out, and (where a case says so) a file it wrote.
#
#   tests/cli/cli_test.sh [FILTER]      run the cases whose name has FILTER
#   UPDATE=1 tests/cli/cli_test.sh      rewrite the golden files (review the
#                                       diff before committing them)
#
# Cases live in tests/cli/cases.sh and tests/cli/cases_*.sh; helpers are
# below.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
WEIR=${WEIR:-$top/build/weir}
GOLDEN=$here/golden
DATA=$here/data
FILTER=${1:-}
UPDATE=${UPDATE:-0}
pass=0
fail=0
failed=()

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Cases see the data folder as ../data, the same short path wherever the
# tree is checked out, so positions in messages do not depend on it.
ln -s "$here/data" "$scratch/data"
DATA=../data

# The case being run: name, and its private directory.
case_name=""
case_dir=""
case_ran=0

begin() { # NAME
    case_name=$1
    case_dir=$scratch/$1
    mkdir -p "$case_dir"
}

ok() { pass=$((pass + 1)); printf 'ok   %s\n' "${1:-$case_name}"; }
bad() {
    fail=$((fail + 1))
    failed+=("$case_name")
    printf 'FAIL %s: %s\n' "$case_name" "$*"
}

wanted() { [ -z "$FILTER" ] || [[ $1 == *"$FILTER"* ]]; }

# golden NAME FILE: compare FILE with golden/NAME (or write it with UPDATE=1).
golden() {
    local g=$GOLDEN/$1
    if [ "$UPDATE" = 1 ]; then
        cp "$2" "$g"
        return 0
    fi
    if [ ! -f "$g" ]; then
        bad "no golden file $g (run with UPDATE=1 to create it)"
        return 1
    fi
    if ! cmp -s "$g" "$2"; then
        bad "$1 differs from golden:"
        diff -u "$g" "$2" | head -20
        return 1
    fi
    return 0
}

# t NAME RC CMD…: run CMD (a shell string) in the case's directory; expect
# exit code RC and stdout equal to golden/NAME.out. stderr is kept in
# $case_dir/stderr for the case to inspect.
t() {
    local name=$1 rc=$2
    shift 2
    case_ran=0
    wanted "$name" || return 0
    case_ran=1
    begin "$name"
    local got
    (cd "$case_dir" && WEIR="$WEIR" DATA="$DATA" eval "$*") \
        >"$case_dir/stdout" 2>"$case_dir/stderr"
    got=$?
    if [ "$got" != "$rc" ]; then
        bad "exit code $got, expected $rc; stderr: $(head -c 400 "$case_dir/stderr")"
        return 1
    fi
    golden "$name.out" "$case_dir/stdout" || return 1
    ok
}

# e NAME RC PATTERN CMD…: an error case. Expect exit code RC, empty stdout,
# exactly one line on stderr that starts with "weir: " and matches the
# extended regex PATTERN, and no file left behind but those the case made.
e() {
    local name=$1 rc=$2 pat=$3
    shift 3
    wanted "$name" || return 0
    begin "$name"
    local before got
    before=$(cd "$case_dir" && find . | sort)
    (cd "$case_dir" && WEIR="$WEIR" DATA="$DATA" eval "$*") \
        >"$case_dir/stdout" 2>"$case_dir/stderr"
    got=$?
    local after
    after=$(cd "$case_dir" && find . | grep -v -e '^./stdout$' -e '^./stderr$' | sort)
    if [ "$got" != "$rc" ]; then
        bad "exit code $got, expected $rc; stderr: $(head -c 400 "$case_dir/stderr")"
    elif [ -s "$case_dir/stdout" ]; then
        bad "stdout not empty: $(head -c 200 "$case_dir/stdout")"
    elif [ "$(wc -l <"$case_dir/stderr")" != 1 ]; then
        bad "stderr is not one line: $(cat "$case_dir/stderr")"
    elif ! grep -Eq "^weir: ($pat)" "$case_dir/stderr"; then
        bad "stderr '$(cat "$case_dir/stderr")' does not match '$pat'"
    elif [ "$before" != "$after" ]; then
        bad "files left behind: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
    else
        ok
    fi
}

# f NAME FILE: after a t case, compare a file it wrote with golden/NAME.
f() {
    [ "$case_ran" = 1 ] || return 0
    local file=$case_dir/$2
    if [ ! -f "$file" ]; then
        bad "did not write $2"
        return 1
    fi
    golden "$1" "$file" && ok "$case_name: $2"
}

# check NAME CMD…: a case that passes when CMD (run in a fresh directory)
# exits 0; for properties that are not a golden comparison.
check() {
    local name=$1
    shift
    wanted "$name" || return 0
    begin "$name"
    local out
    if out=$(cd "$case_dir" && WEIR="$WEIR" DATA="$DATA" eval "$*" 2>&1); then
        ok
    else
        bad "$(printf '%s' "$out" | head -c 600)"
    fi
}

[ -x "$WEIR" ] || { echo "cli_test: no weir binary at $WEIR (run make)"; exit 1; }
mkdir -p "$GOLDEN"
# cases.sh, then cases_*.sh (one file per area, so that work on different
# areas does not collide in one file).
for cases in "$here"/cases.sh "$here"/cases_*.sh; do
    [ -f "$cases" ] || continue
    # shellcheck disable=SC1090
    . "$cases"
done

echo "cli: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
    printf '  failed: %s\n' "${failed[@]}"
    exit 1
fi
