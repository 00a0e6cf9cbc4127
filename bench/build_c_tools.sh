#!/usr/bin/env bash
# Build the original C tcpcopy 1.3.0 and intercept 1.0.0 for `bench/engine_bench.py --against DIR`.
#
#   bash bench/build_c_tools.sh [OUTDIR] [TCPCOPY_SRC] [INTERCEPT_SRC]
#
# OUTDIR (default /tmp/ctools) receives src/, the build logs and bin/{tcpcopy,intercept};
# it must be outside this repository: their code and binaries are never committed here.
# TCPCOPY_SRC / INTERCEPT_SRC: a git repository (bare or not) or a plain source directory.
# Without them the public repositories are cloned:
#   https://github.com/session-replay-tools/tcpcopy    commit 929511d8 (reports "tcpcopy 1.3.0")
#   https://github.com/session-replay-tools/intercept  commit 3d88f4e5 (reports "intercept 1.0.0")
# (the commits of reference/c-tcpcopy-baseline.md). Both are built with a plain ./configure:
# the default tcpcopy build captures with a raw socket (not --pcap-capture), as in the baseline;
# intercept captures with libpcap (needs libpcap-dev, plus gcc and make).
set -euo pipefail

OUT=${1:-/tmp/ctools}
TCPCOPY_SRC=${2:-https://github.com/session-replay-tools/tcpcopy}
INTERCEPT_SRC=${3:-https://github.com/session-replay-tools/intercept}
TCPCOPY_REV=929511d8
INTERCEPT_REV=3d88f4e5
REPO=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case "$OUT/" in
  "$REPO"/*) echo "build_c_tools: $OUT is inside the repository; pick a folder outside it" >&2
             exit 2 ;;
esac
for tool in gcc make; do
  command -v "$tool" >/dev/null || { echo "build_c_tools: $tool missing (apt-get install build-essential)" >&2; exit 2; }
done
[ -e /usr/include/pcap.h ] || [ -e /usr/include/pcap/pcap.h ] || {
  echo "build_c_tools: libpcap headers missing (apt-get install libpcap-dev)" >&2; exit 2; }

# unpack NAME SRC REV: put the source tree of SRC at REV into $OUT/src/NAME
unpack() {
  local name=$1 src=$2 rev=$3 dest=$OUT/src/$1
  rm -rf "$dest"
  mkdir -p "$dest"
  if [ -d "$src" ] && [ -f "$src/configure" ] && ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    cp -a "$src/." "$dest/"                              # a plain source directory
  elif [ -d "$src" ]; then
    local gitdir
    gitdir=$(git -C "$src" rev-parse --absolute-git-dir)  # a (bare) git repository
    git --git-dir="$gitdir" archive "$rev" | tar -x -C "$dest"
  else
    git clone --quiet "$src" "$OUT/src/$name.git"         # a URL
    git -C "$OUT/src/$name.git" archive "$rev" | tar -x -C "$dest"
    rm -rf "$OUT/src/$name.git"
  fi
}

unpack tcpcopy "$TCPCOPY_SRC" "$TCPCOPY_REV"
unpack intercept "$INTERCEPT_SRC" "$INTERCEPT_REV"
mkdir -p "$OUT/bin"
for name in tcpcopy intercept; do
  ( cd "$OUT/src/$name" && ./configure >"$OUT/$name.configure.log" 2>&1 \
      && make -j"$(nproc)" >"$OUT/$name.make.log" 2>&1 ) \
    || { echo "build_c_tools: building $name failed; see $OUT/$name.*.log" >&2; exit 1; }
  cp "$OUT/src/$name/objs/$name" "$OUT/bin/$name"
done
"$OUT/bin/tcpcopy" -v || true         # prints its version, exits 255
"$OUT/bin/intercept" -v || true
echo "built: $OUT/bin/tcpcopy $OUT/bin/intercept"
echo "run:   sudo .venv/bin/python bench/engine_bench.py --against $OUT/bin"
