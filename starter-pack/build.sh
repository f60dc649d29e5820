#!/usr/bin/env bash
# Builds the greeter module as a plugin (build/greeter.so) and as an executable
# (build/greeter-module), runs its unit tests, and packs the executable into
# the image greeter-module:0.1.0 loaded into the container backend.
#
# Usage: ./build.sh [--no-image] [CMAKE_ARGS...]
#   --no-image        build and test only
#   CMAKE_ARGS        passed to the configure step, e.g. -DGREETER_WERROR=ON
# Environment:
#   MODHOST_PREFIX    where the modhost SDK is installed (added to CMAKE_PREFIX_PATH)
#   MODHOST           the `modhost` command (default: the one installed with the
#                     SDK the project was configured against, else `modhost` on PATH)
#   BUILD_DIR         the build directory (default: build)
#   JOBS              parallel build jobs (default: 2)
set -euo pipefail
cd "$(dirname "$0")"

image=greeter-module:0.1.0
build=${BUILD_DIR:-build}
pack=1
cmake_args=()
for arg in "$@"; do
  case $arg in
    --no-image) pack=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) cmake_args+=("$arg") ;;
  esac
done
if [[ -n ${MODHOST_PREFIX:-} ]]; then
  cmake_args+=("-DCMAKE_PREFIX_PATH=$MODHOST_PREFIX")
fi

cmake -S . -B "$build" "${cmake_args[@]}"
cmake --build "$build" -j"${JOBS:-2}"
(cd "$build" && ctest --output-on-failure)

if [[ $pack == 0 ]]; then
  echo "build.sh: built $build/greeter.so and $build/greeter-module (image not packed: --no-image)"
  exit 0
fi

# The modhost command: $MODHOST, else the one next to the SDK found by CMake
# (modhost_DIR is PREFIX/lib/cmake/modhost), else the one on PATH.
modhost=${MODHOST:-}
if [[ -z $modhost ]]; then
  sdk_dir=$(sed -n 's/^modhost_DIR:PATH=//p' "$build/CMakeCache.txt")
  if [[ -n $sdk_dir && -x $sdk_dir/../../../bin/modhost ]]; then
    modhost=$(cd "$sdk_dir/../../../bin" && pwd)/modhost
  elif command -v modhost >/dev/null; then
    modhost=$(command -v modhost)
  else
    echo "build.sh: no 'modhost' command found (set MODHOST=/path/to/modhost); image not packed" >&2
    exit 1
  fi
fi

# Packing loads the image into the backend: ask first whether one answers.
status=0
probe=$("$modhost" enclave ls 2>&1 >/dev/null) || status=$?
if [[ $status == 6 ]]; then
  reason=$(printf '%s\n' "$probe" | sed -n 's/^error: //p' | tail -n 1)
  reason=${reason#no container backend is available: }
  echo "build.sh: skipped packing $image: no container backend answers${reason:+ ($reason)}" >&2
  echo "build.sh: start Docker, then run: $modhost image pack --name $image --entrypoint $build/greeter-module" >&2
  exit 0
elif [[ $status != 0 ]]; then
  echo "build.sh: '$modhost enclave ls' failed: $probe" >&2
  exit 1
fi
"$modhost" image pack --name "$image" --entrypoint "$build/greeter-module"
echo "build.sh: run it with: $modhost module exec $image --execute-params '{\"name\": \"Ada\"}'"
