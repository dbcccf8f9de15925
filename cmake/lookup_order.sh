#!/usr/bin/env bash
# The order in which the dynamic linker searches kiln-server's shared libraries.
#
#   lookup_order.sh DEFAULT OUT           writes OUT, a linker response file that names kiln-server's
#                                       libraries first, busiest first (empty: the default order)
#   lookup_order.sh --check DEFAULT BINARY
#                                       exits 0 when BINARY (kiln-server, linked with OUT) binds
#                                       every reference as DEFAULT does, but for weak definitions
#
# DEFAULT is kiln-server linked in the default order (kiln-server-default-order); both are run with
# --help.
#
# Why: Debian's libtorch_cpu needs OpenCV and FFmpeg, which bring in about 340 shared libraries
# (GDAL, Xerces, Qt, GStreamer, ...). At start the dynamic linker binds about 150,000 symbol
# references, most of them a library's references to its own exported symbols, and looks each up
# in the libraries of the global search scope in turn until one defines it. The scope is the
# executable's DT_NEEDED list, then their dependencies breadth first: a library deep in it (Xerces
# at about 270) pays that walk for each of its own references, 18 million lookups in all and about
# a quarter of kiln-server's start. Libraries named first on the executable's link line come first
# in its DT_NEEDED and so in the scope: ordered by how many references each answers, the same
# start does about 4 million.
#
# The order must not change what a reference binds to where that matters. Where several libraries
# define a symbol, the first in the scope wins. For a weak or unique definition (an inline
# function, a template instance, typeinfo: C++'s vague linkage, the same in every library by the
# one-definition rule) any copy will do, and every reference still binds to one and the same; a
# strong one must keep its library (libblas.so.3 and libopenblas.so.0 both define sgemm_, and the
# first is the system's choice of BLAS). So DEFAULT runs with the order put first (LD_PRELOAD,
# which puts libraries where DT_NEEDED would) and without; where a strong definition changed
# library, the library it had moves to just before the one that took it, and DEFAULT runs again
# (up to 8 times). The order is written only once no strong definition moved; else OUT is empty.
set -euo pipefail
check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
[ $# -eq 2 ] || { echo "usage: lookup_order.sh DEFAULT OUT | --check DEFAULT BINARY" >&2; exit 2; }
default_binary=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# bindings FILE PRELOAD EXECUTABLE: "referencing-file symbol defining-file" per binding that
# EXECUTABLE --help makes with LD_PRELOAD=PRELOAD, the executable itself named "<executable>".
# Fails when it does, or when a library could not be preloaded (then the order it ran in is not
# the one asked for).
bindings() {
  local status=0
  LD_PRELOAD=$2 LD_DEBUG=bindings "$3" --help 2> "$work/debug" > /dev/null || status=$?
  # "  PID:	binding file A [0] to B [0]: normal symbol `S' [VERSION]"
  awk -v executable="$3" '$2 == "binding" && $3 == "file" {
         symbol = $11; gsub(/[`'"'"']/, "", symbol)
         print ($4 == executable ? "<executable>" : $4), symbol, ($7 == executable ? "<executable>" : $7)
       }' "$work/debug" | sort -u > "$1"
  if [ $status != 0 ] || grep -q 'cannot be preloaded' "$work/debug"; then
    echo "lookup_order.sh: $3 --help failed (exit $status) or a library was not preloaded:" >&2
    grep -v 'binding file' "$work/debug" | tail -5 >&2
    return 1
  fi
}

# strong_changes DEFAULT OTHER: "old new" per pair of libraries where a reference of DEFAULT's to
# a strong definition in old binds in OTHER to new, and "old -" where it is not bound in OTHER at
# all. Leaves the changed references in $work/changed.
strong_changes() {
  awk 'NR == FNR {def[$1 " " $2] = $3; next}
       ($1 " " $2) in def {seen[$1 " " $2] = 1; if (def[$1 " " $2] != $3) print $2, def[$1 " " $2], $3}
       END {for (key in def) if (!(key in seen)) {split(key, k, " "); print k[2], def[key], "-"}}' \
    "$1" "$2" | sort -u > "$work/changed"
  : > "$work/binds"
  for lib in $(awk '{print $2; print $3}' "$work/changed" | sort -u); do
    [ -f "$lib" ] || continue  # "<executable>", "-": no weak definition to read
    readelf --dyn-syms -W "$lib" | awk -v lib="$lib" \
      '$7 != "UND" && NF >= 8 {name = $8; sub(/@.*/, "", name); print lib, name, $5}' >> "$work/binds"
  done
  awk 'NR == FNR {bind[$1 " " $2] = $3; next}
       {weak = "^(WEAK|UNIQUE)$"
        if (bind[$2 " " $1] !~ weak || bind[$3 " " $1] !~ weak) print $2, $3}' \
    "$work/binds" "$work/changed" | sort -u
}

# default_order REASON: writes an empty response file (the default order), saying why.
default_order() {
  echo "lookup_order.sh: $1; kiln-server links in the default order" >&2
  : > "$out"
  exit 0
}

if [ $check = 1 ]; then
  binary=$2
  bindings "$work/default" "" "$default_binary" || exit 1
  bindings "$work/binary" "" "$binary" || exit 1
  strong_changes "$work/default" "$work/binary" > "$work/strong"
  if [ -s "$work/strong" ]; then
    echo "lookup_order.sh: $binary binds strong definitions elsewhere than $default_binary" \
         "(old new; '-': unbound):"
    cat "$work/strong"
    exit 1
  fi
  echo "lookup_order.sh: $binary binds every reference as $default_binary does" \
       "($(wc -l < "$work/default") bindings; $(wc -l < "$work/changed") to another copy of a" \
       "weak definition)"
  exit 0
fi

out=$2
bindings "$work/default" "" "$default_binary" || default_order "the default order did not run"
total=$(wc -l < "$work/default")
[ "$total" -ge 1000 ] || default_order "only $total bindings seen (no LD_DEBUG?)"
# The libraries by how many bindings they answer, most first; not the executable, the dynamic
# linker or the vDSO.
awk '{print $3}' "$work/default" | sort | uniq -c | sort -k1,1nr -k2 \
  | awk '$2 ~ /^\// && $2 !~ /\/ld-linux/ {print $2}' \
  > "$work/order"

for attempt in 1 2 3 4 5 6 7 8; do
  bindings "$work/ordered" "$(paste -sd: "$work/order")" "$default_binary" \
    || default_order "the order did not run"
  strong_changes "$work/default" "$work/ordered" > "$work/strong"
  if [ ! -s "$work/strong" ]; then
    {
      echo "-Wl,--push-state,--no-as-needed"
      cat "$work/order"
      echo "-Wl,--pop-state"
    } > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "lookup_order.sh: $(wc -l < "$work/order") libraries named first, busiest first" \
         "($total bindings; $(wc -l < "$work/changed") to another copy of a weak definition)"
    exit 0
  fi
  ! grep -q ' -$' "$work/strong" || default_order "the order left references unbound"
  # Each library that lost a strong definition goes to just before the one that took it.
  while read -r old new; do
    awk -v old="$old" -v new="$new" '$0 == new {print old} $0 != old {print}' "$work/order" \
      > "$work/order.next"
    mv "$work/order.next" "$work/order"
  done < "$work/strong"
done
cat "$work/strong" >&2
default_order "every order tried moved a strong definition (old new above)"
