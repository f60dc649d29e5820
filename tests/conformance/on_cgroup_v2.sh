#!/bin/sh
# Runs the native backend's conformance suite and its own integration tests
# on a cgroup v2 hierarchy, on a host that mounts cgroup v1: in a private
# mount namespace, cgroup2 is mounted over /sys/fs/cgroup, so the backend
# finds v2 there and makes, joins, freezes and removes v2 cgroups. The
# controllers v1 hierarchies hold (memory, pids, cpu here) are missing on it:
# limits are left out of the suite (MODHOST_TEST_NO_LIMITS) and refusing one
# is tested instead. On a host that mounts v2 already, this is a plain run.
#
# Usage: on_cgroup_v2.sh BUILD_BIN_DIR
set -eu
bin=$1
if [ "$(id -u)" != 0 ]; then
  echo "on_cgroup_v2: needs root; skipped"
  exit 0
fi
exec unshare --mount --propagation private sh -euc '
  bin=$1
  if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -t cgroup2 none /sys/fs/cgroup
  fi
  test -f /sys/fs/cgroup/cgroup.controllers
  echo "cgroup v2 controllers here: $(cat /sys/fs/cgroup/cgroup.controllers)"
  for c in memory pids cpu; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || export MODHOST_TEST_NO_LIMITS=1
  done
  "$bin/modhost_conformance_tests" --gtest_filter="*/native"
  "$bin/modhost_native_integration_tests"
' on_cgroup_v2 "$bin"
