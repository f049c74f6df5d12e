#!/bin/sh
# make demo: the main job on built-in data.  Grows with the toolkit; today it
# shows the stream tools on a synthetic image stream.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
PATH="$top/bin:$top/build/helpers:$PATH"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
make -s -C "$top" build/helpers/mkstream
echo "== 6 synthetic image records, u8[3,32,32]"
MKSTREAM_OUT="$dir/x.mts" mkstream 6 u8 3 32 32
mts show "$dir/x.mts"
echo "== compressed, then records 2..3 read back through a pipe"
mts cat -o "$dir/x.mts.zst" "$dir/x.mts"
cat "$dir/x.mts.zst" | mts show --skip 2 --take 2
mts count "$dir/x.mts" "$dir/x.mts.zst"
