#!/bin/sh
# Install weir into a temporary prefix, then build a program against it with
# pkg-config alone — the way a user outside this tree would — and run it,
# linked both dynamically (via the soname) and statically.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s -C "$top" install PREFIX="$tmp/w" >/dev/null
export PKG_CONFIG_PATH="$tmp/w/lib/pkgconfig"
fail=0; pass=0
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then pass=$((pass + 1)); echo "ok   $1"
    else fail=$((fail + 1)); echo "FAIL $1: expected '$2', got '$3'"; fi
}
cc -std=c11 -Wall -Werror -o "$tmp/app" "$top/tests/install/app.c" \
   $(pkg-config --cflags --libs weir)
check "dynamic link runs the pipeline" "WEIR RUNS PIPELINES" \
      "$(LD_LIBRARY_PATH="$tmp/w/lib" "$tmp/app")"
check "soname carries the ABI" "libweir.so.0" \
      "$(objdump -p "$tmp/app" | awk '/NEEDED.*weir/ {print $2}')"
cc -std=c11 -Wall -Werror -o "$tmp/app-static" "$top/tests/install/app.c" \
   $(pkg-config --cflags weir) \
   $(pkg-config --static --libs weir | sed "s|-lweir|$tmp/w/lib/libweir.a|")
check "static link runs the pipeline" "WEIR RUNS PIPELINES" "$("$tmp/app-static")"
check "installed weir answers --version" "weir $(pkg-config --modversion weir)" \
      "$("$tmp/w/bin/weir" --version)"
make -s -C "$top" uninstall PREFIX="$tmp/w" >/dev/null
check "uninstall removes the header" "gone" "$([ -e "$tmp/w/include/weir.h" ] && echo there || echo gone)"
echo "install: $pass passed, $fail failed"
[ "$fail" = 0 ]
