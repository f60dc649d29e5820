#!/usr/bin/env bash
# The layering of the tree, checked on what the compiler and the linker see:
#
#   sdk/                       the C++ SDK
#   host/                      engine, daemon, CLI, Starlark, netshaper
#   backends/   modules/       backends; built-in modules (module API only)
#   module-api/                the module API
#
# 1. Includes: no file below host/ includes a header of host/ or sdk/, and
#    no module includes a backend's header (only modhost/*.hpp, the API).
# 2. Calls: no static library of a lower layer references a symbol that only
#    a library of a higher layer defines (the undefined symbols of the
#    library's objects, `nm -u`, against the others' defined ones).
#
# Usage: layers.sh SOURCE_DIR RULE...
#   RULE = NAME=LIB[,LIB...]>FORBIDDEN_LIB[,FORBIDDEN_LIB...]
# Exit 0 when every rule holds, 1 (and every offence listed) when not.
set -euo pipefail
src=${1:?usage: layers.sh SOURCE_DIR RULE...}
shift
bad=0

# --- 1. includes ---
upward() {  # DIR PATTERN WHY
  local hits
  hits=$(grep -rnE "^#include \"($2)" "$src/$1" --include='*.cpp' --include='*.hpp' --include='*.h' || true)
  if [ -n "$hits" ]; then
    echo "layers: $1 includes upward ($3):" >&2
    echo "$hits" | sed "s|^$src/|  |" >&2
    bad=1
  fi
}
host_headers='engine/|daemon/|cli/|starlark/|netshaper/|runner/|host/|sdk/|modhost/(client|testing)\.hpp'
upward backends "$host_headers" "a backend knows nothing of the host"
upward module-api "$host_headers|backends/|modules/" "the module API stands on nothing of the tree"
upward modules "$host_headers|backends/" "a module knows only the module API"

# --- 2. calls ---
for rule in "$@"; do
  name=${rule%%=*}
  rest=${rule#*=}
  lows=${rest%%>*}
  highs=${rest#*>}
  IFS=, read -r -a low_libs <<<"$lows"
  IFS=, read -r -a high_libs <<<"$highs"
  defined_low=$(for l in "${low_libs[@]}"; do nm --defined-only -j "$l" 2>/dev/null; done | sort -u)
  defined_high=$(for h in "${high_libs[@]}"; do nm --defined-only -j "$h" 2>/dev/null; done | sort -u)
  if [ -z "$defined_high" ]; then
    echo "layers: $name: the higher libraries define nothing (not built?): ${high_libs[*]}" >&2
    bad=1
    continue
  fi
  needed=$(for l in "${low_libs[@]}"; do nm -u -j "$l" 2>/dev/null; done | grep 7modhost | sort -u)
  # Needed, not defined below, and defined above.
  offences=$(comm -23 <(echo "$needed") <(echo "$defined_low") | comm -12 - <(echo "$defined_high") || true)
  if [ -n "$offences" ]; then
    echo "layers: $name: calls that run upward:" >&2
    echo "$offences" | c++filt | sed 's/^/  /' >&2
    bad=1
  else
    echo "layers: $name: $(echo "$needed" | grep -c . || true) symbols referenced, none from above"
  fi
done
[ "$bad" = 0 ] && echo "layers: no include and no call runs upward"
exit "$bad"
