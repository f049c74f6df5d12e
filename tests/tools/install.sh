#!/usr/bin/env bash
# make install into a temporary prefix: the tools, the man pages, the
# library, its headers and medssl.pc; a ten-line program built against the
# installed library through pkg-config runs.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
prefix=$T/prefix
if ! out=$(make -s -C "$top" install PREFIX="$prefix" 2>&1); then
    fail "make install" "$out"
    exit 0
fi
[ -x "$prefix/bin/case-pack" ] && [ -f "$prefix/share/man/man1/case-pack.1" ] && [ -f "$prefix/share/man/man5/mts.5" ] \
    && [ -f "$prefix/lib/libmedssl.a" ] && [ -f "$prefix/include/medssl/stream.h" ] \
    && pass "make install: tools, man pages, library and headers" || fail "install" "$(find "$prefix" | head -40)"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --variable=prefix medssl)" = "$prefix" ] && pkg-config --exists --print-errors medssl \
    && pass "medssl.pc names the prefix, and its Requires.private are installed" \
    || fail "medssl.pc" "$(cat "$prefix/lib/pkgconfig/medssl.pc")"
cat > "$T/count.c" <<'C'
#include <stdio.h>
#include "blas.h"
#include "model.h"
int main(void)
{
    model_config c = model_config_default();   // ResNet-50
    c.head_layers = 0, c.classes = 1000;        // torchvision's, with its 1000-class fc
    float a[4] = {1, 2, 3, 4}, eye[4] = {1, 0, 0, 1}, y[4];
    gemm_f32(false, false, 2, 2, 2, 1, a, 2, eye, 2, 0, y, 2);
    printf("%.0f %g\n", model_param_count(&c), y[3]);
}
C
if out=$(cc "$T/count.c" $(pkg-config --cflags --static --libs medssl) -o "$T/count" 2>&1); then
    got=$("$T/count")
    [ "$got" = "25557032 4" ] && pass "a program built with pkg-config --static --libs medssl runs" \
        || fail "program output" "$got"
else
    fail "build against the installed library" "$out"
fi
