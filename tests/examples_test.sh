#!/bin/sh
# The library as a user outside this tree gets it: install weir into a
# temporary prefix, copy stages/examples/ elsewhere, build every example
# with pkg-config alone, run each and compare its output; build the plugin
# example against weir.h alone and run it through the installed weir (with
# load() in a spec and with --plugin) and from a program (weir_plugin_load).
# Then: the shared library exports exactly the weir_ API declared in
# weir.h, and the man pages are installed and removed.
#
#   sh tests/examples_test.sh        (make test runs it; needs `make` first)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
# same NAME EXPECTED-FILE ACTUAL-FILE
same() {
    if cmp -s "$2" "$3"; then ok "$1"
    else bad "$1:"; diff -u "$2" "$3" | head -30; fi
}
# holds NAME FILE LINE: FILE has LINE exactly
holds() {
    if grep -qxF -- "$3" "$2"; then ok "$1"
    else bad "$1: no line '$3' in:"; head -30 "$2"; fi
}

make -s -C "$top" install PREFIX="$tmp/w" >/dev/null
export PKG_CONFIG_PATH="$tmp/w/lib/pkgconfig"
export LD_LIBRARY_PATH="$tmp/w/lib"
WEIR=$tmp/w/bin/weir

# Out of tree: a copy of the examples, far from pipeline/ and build/.
src=$tmp/examples
cp -r "$top/stages/examples" "$src"
cd "$src"
CC=${CC:-cc}
STRICT="-std=c11 -Wall -Wextra -Werror"

# ---- build every example with pkg-config --------------------------------------
progs=""
for f in *.c; do
    p=${f%.c}
    [ "$p" = collatz ] && continue # the plugin, built below
    progs="$progs $p"
    # shellcheck disable=SC2046
    if $CC $STRICT -o "$p" "$f" $(pkg-config --cflags --libs weir) 2>"$p.build"; then
        ok "build $f with pkg-config --cflags --libs weir"
    else
        bad "build $f:"; cat "$p.build"
    fi
done
# shellcheck disable=SC2046
if $CC $STRICT -shared -fPIC $(pkg-config --cflags weir) -o collatz.so collatz.c 2>collatz.build; then
    ok "build collatz.c as a plugin with pkg-config --cflags weir"
else
    bad "build collatz.c as a plugin:"; cat collatz.build
fi
if objdump -p collatz.so | grep -q 'NEEDED.*libweir'; then
    bad "the plugin links libweir (it must take weir_ from the program that loads it)"
else
    ok "the plugin does not link libweir"
fi
for p in $progs; do
    if objdump -p "$p" | grep -q 'NEEDED.*libweir\.so\.0'; then ok "$p links libweir.so.0"
    else bad "$p does not link libweir.so.0"; fi
done

# ---- run them -----------------------------------------------------------------------
# demo: the graph's text and a throughput figure vary; the results do not.
if ./demo 100000 4 >demo.out 2>demo.err; then ok "demo runs"; else bad "demo exits non-zero: $(cat demo.err)"; fi
holds "demo: the collatz stage has 4 replicas" demo.out "collatz: rows -> rows, 4 replicas, ordered collector"
holds "demo: every row" demo.out "rows processed:   100000 by 4 collatz replicas"
holds "demo: rows in order" demo.out "rows in order:    yes"
holds "demo: the longest sequence" demo.out "longest sequence: n = 77031 takes 350 steps"

cat >expect.prodcons <<'EOF'
3 producers sent 1000 jobs each into a channel of 64
2 consumers received 3000 jobs, sum 1501500 (expected 1501500)
  from producer 0: 1000
  from producer 1: 1000
  from producer 2: 1000
left in the channel: 0
EOF
cat >expect.errgroup <<'EOF'
sum of the squares of 1..1000: 333833500
the group failed: WEIR_EDATA: square: 13 is an unlucky number
  its context's cause: WEIR_EDATA
  the endless generator stopped: WEIR_ECANCELED
  the sum stopped: WEIR_ECANCELED
EOF
cat >expect.timeout <<'EOF'
1. receive under a 50 ms timeout, nothing sent: WEIR_EDEADLINE (deadline exceeded)
2. a worker needing 10 steps of 100 ms, under a 50 ms deadline: WEIR_EDEADLINE after fewer than 10 steps
3. a result that comes at once, under a 10 s timeout: 42
4. the child has its parent's deadline: yes
   before the cancel: child done no, err 0
   after cancelling the parent with cause -1000: child done yes, err WEIR_ECANCELED, cause -1000, wait WEIR_ECANCELED
EOF
cat >expect.select <<'EOF'
1. a: 100 items (sum 5050), b: 50 items (sum 51225); the loop ended: both closed
2. a: 5 items (sum 15), b: 0 items (sum 0); the loop ended: WEIR_ECANCELED (cause -1000)
EOF
for p in prodcons errgroup timeout select; do
    # Several times: the output must not depend on how threads interleave.
    for i in 1 2 3 4 5; do
        rc=0
        timeout 60 "./$p" >"$p.out" 2>"$p.err" || rc=$?
        if [ "$rc" != 0 ] || ! cmp -s "expect.$p" "$p.out"; then break; fi
    done
    if [ "$rc" != 0 ]; then bad "$p exits $rc: $(cat "$p.err")"
    else same "$p prints what README.md says" "expect.$p" "$p.out"; fi
done

# ---- the plugin, through the installed weir and from a program ----------------------
cat >expect.plugin <<'EOF'
n,steps
52527,339
60975,334
77031,350
78791,337
87087,332
88059,332
91463,332
EOF
if "$WEIR" run plugin.weir >plugin.out 2>plugin.err; then
    same "weir run plugin.weir (load(\"./collatz.so\"))" expect.plugin plugin.out
else
    bad "weir run plugin.weir: $(cat plugin.err)"
fi
one='numbers(count=100000) | collatz(n, workers=4) | filter(steps >= 330)'
if "$WEIR" --plugin ./collatz.so run -e "$one" >plugin2.out 2>plugin2.err; then
    same "weir --plugin ./collatz.so run -e ..." expect.plugin plugin2.out
else
    bad "weir --plugin ./collatz.so run: $(cat plugin2.err)"
fi
"$WEIR" --plugin ./collatz.so explain -e "$one" >explain.out 2>&1 || true
holds "explain shows the plugin stage's replicas" explain.out \
      "collatz (<expr>:1:25): rows -> rows, 4 replicas, ordered collector"
holds "explain shows the plugin stage's columns" explain.out "    columns: n, steps"
"$WEIR" --plugin ./collatz.so stages >stages.out 2>&1 || true
holds "weir stages lists the plugin's stages" stages.out \
      "  collatz    rows   -> rows   append the Collatz sequence length of a column (a collatz.so plugin stage) [parallel]"
if ./runspec -p ./collatz.so "$one" >runspec.out 2>runspec.err; then
    same "runspec: weir_plugin_load from a program linked with -lweir" expect.plugin runspec.out
else
    bad "runspec -p ./collatz.so: $(cat runspec.err)"
fi
rc=0
./runspec -t 0.2 'gen(rows=0) | discard()' >/dev/null 2>runspec.err || rc=$?
if [ "$rc" = 1 ] && grep -q 'deadline exceeded (WEIR_EDEADLINE)' runspec.err; then
    ok "runspec: a run under a timeout ends by its deadline"
else
    bad "runspec -t 0.2: exit $rc, $(cat runspec.err)"
fi

# A static link takes the whole archive (the built-in stages are found by
# name, so nothing else pulls them in) and, to load plugins, -rdynamic.
# shellcheck disable=SC2046
if $CC $STRICT -rdynamic -o runspec-static runspec.c $(pkg-config --cflags weir) \
      -Wl,--whole-archive "$tmp/w/lib/libweir.a" -Wl,--no-whole-archive \
      $(pkg-config --static --libs weir | sed 's/-lweir//') 2>static.build; then
    ok "build runspec.c statically (whole archive, -rdynamic)"
    if objdump -p runspec-static | grep -q 'NEEDED.*libweir'; then
        bad "runspec-static links libweir.so"
    fi
    if [ "$(./runspec-static 'gen(rows=3) | count()' 2>/dev/null)" = 3 ]; then
        ok "static runspec finds the built-in stages"
    else
        bad "static runspec: $(./runspec-static 'gen(rows=3) | count()' 2>&1)"
    fi
    if ./runspec-static -p ./collatz.so "$one" >static.out 2>static.err; then
        same "static runspec loads the plugin" expect.plugin static.out
    else
        bad "static runspec -p ./collatz.so: $(cat static.err)"
    fi
else
    bad "build runspec.c statically:"; cat static.build
fi

# ---- the exported symbols are exactly the weir_ API ----------------------------------
grep '^WEIR_API' "$tmp/w/include/weir.h" | sed 's/(.*//' | grep -o 'weir_[a-z0-9_]*$' |
    sort >declared
for lib in "$top/build/libweir.so" "$tmp/w/lib/libweir.so.0"; do
    nm -D --defined-only "$lib" | awk '{print $NF}' | sort >exported
    if [ ! -s declared ] || [ ! -s exported ]; then
        bad "$lib: no symbols read (nm -D, weir.h)"
        continue
    fi
    if grep -v '^weir_' exported >stray || grep '^weir__' exported >>stray; [ -s stray ]; then
        bad "$lib exports symbols outside the weir_ API: $(tr '\n' ' ' <stray)"
    else
        ok "$lib exports only weir_ symbols (no weir__ internals)"
    fi
    if comm -23 declared exported >missing; [ -s missing ]; then
        bad "$lib lacks WEIR_API functions of weir.h: $(tr '\n' ' ' <missing)"
    else
        ok "$lib exports every WEIR_API function of weir.h ($(wc -l <declared))"
    fi
    if comm -13 declared exported >extra; [ -s extra ]; then
        bad "$lib exports weir_ symbols weir.h does not declare: $(tr '\n' ' ' <extra)"
    else
        ok "$lib exports nothing weir.h does not declare"
    fi
done
soname=$(objdump -p "$tmp/w/lib/libweir.so.0" | awk '/SONAME/ {print $2}')
if [ "$soname" = libweir.so.0 ]; then ok "the soname is libweir.so.0"; else bad "soname '$soname'"; fi

# ---- man pages -----------------------------------------------------------------------
for m in man1/weir.1 man5/weir-spec.5; do
    if [ -f "$tmp/w/share/man/$m" ]; then ok "make install puts $m in share/man"
    else bad "make install did not install share/man/$m"; fi
done
if command -v man >/dev/null 2>&1 && [ -f "$tmp/w/share/man/man1/weir.1" ]; then
    if MANPATH="$tmp/w/share/man" MANWIDTH=80 man weir 2>man.err | grep -q 'weir stages'; then
        ok "man weir finds the installed page"
    else
        bad "man weir: $(cat man.err)"
    fi
fi
make -s -C "$top" uninstall PREFIX="$tmp/w" >/dev/null
left=$(cd "$tmp/w" && find . -type f | sort | tr '\n' ' ')
if [ -z "$left" ]; then ok "make uninstall removes every file it installed"
else bad "make uninstall left: $left"; fi

echo "examples: $pass passed, $fail failed"
[ "$fail" = 0 ]
