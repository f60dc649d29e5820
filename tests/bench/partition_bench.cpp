// Network partitions over N services of one enclave (N = 10, 25, 50, 100 by
// default), on the Docker backend, through the engine's NetworkControl as the
// partition module uses it:
//   apply      two groups, blocked between them (from a healed network)
//   heal       back to nothing of ours
//   update     three groups; one pair's loss changes, the other pairs' rules stay
//   reshape    the same, for a delayed pair (only the shaper's table changes)
// Baseline in the same run: one iptables-restore of the same chain in one
// service's namespace (the floor every namespace pays when its rules change).
// Prints medians. Usage: partition_bench [ROUNDS] [N...]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "engine/batch.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine/netns.hpp"
#include "engine/network_control.hpp"
#include "support/process_util.hpp"

using Clock = std::chrono::steady_clock;

namespace {

const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

template <typename T>
T must(modhost::Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

void check(const modhost::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.error().message().c_str());
    std::exit(1);
  }
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

modhost::NetworkPartitioning groups(const std::vector<std::string>& names, int parts) {
  modhost::NetworkPartitioning p;
  for (std::size_t i = 0; i < names.size(); ++i) {
    p.partitions["g" + std::to_string(static_cast<int>(i) % parts)].push_back(names[i]);
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  std::vector<int> sizes;
  for (int i = 2; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {10, 25, 50, 100};
  modhost::engine::init_logging(modhost::LogLevel::warn);
  std::string scope = "bench" + std::to_string(::getpid());
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  if (modhost::test::run_command(
          {kModhost, "image", "load", std::string(MODHOST_IMAGE_DIR) + "/modhost-busybox.tar"})
          .exit_code != 0) {
    std::fprintf(stderr, "cannot load the busybox image (is a Docker engine running?)\n");
    return 1;
  }
  auto engine = must(modhost::engine::Engine::create({}), "engine");
  modhost::backend::Backend* backend = must(engine->backend(), "backend");
  modhost::engine::NetworkControl* net = must(engine->network(), "network control");

  std::printf(
      "| services | apply (blocked, 2 groups) | heal | update one pair's loss | update one pair's delay | "
      "one iptables-restore | update / restore |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int n : sizes) {
    auto enclave = must(backend->create_enclave("partition-bench-" + std::to_string(n)), "create enclave");
    std::vector<modhost::ServiceConfig> configs;
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) {
      modhost::ServiceConfig c;
      c.name = "s" + std::to_string(i);
      c.image = "modhost/busybox:1";
      c.cmd = {"sleep", "3600"};
      configs.push_back(c);
      names.push_back(c.name);
    }
    auto t0 = Clock::now();
    auto services = must(modhost::engine::add_services(*backend, enclave.id, configs, 8), "add services");
    std::fprintf(stderr, "%d services up in %.0f ms\n", n, ms_since(t0));

    std::vector<double> apply, heal, update, reshape, restore;
    modhost::NetworkPartitioning blocked = groups(names, 2);
    blocked.connections.push_back({"g0", "g1", modhost::Connection{.blocked = true}});

    modhost::NetworkPartitioning lossy = groups(names, 3);
    modhost::Connection loss;
    loss.loss_percent = 10;
    modhost::Connection delay;
    delay.delay = std::chrono::milliseconds(5);
    lossy.connections = {
        {"g0", "g1", loss}, {"g0", "g2", modhost::Connection{.blocked = true}}, {"g1", "g2", delay}};

    for (int r = 0; r < rounds; ++r) {
      t0 = Clock::now();
      must(net->repartition(enclave.id, blocked), "apply");
      apply.push_back(ms_since(t0));
      t0 = Clock::now();
      check(net->heal(enclave.id), "heal");
      heal.push_back(ms_since(t0));
    }
    must(net->repartition(enclave.id, lossy), "apply three groups");
    for (int r = 0; r < rounds; ++r) {
      lossy.connections[0].connection.loss_percent = r % 2 == 0 ? 20 : 10;
      t0 = Clock::now();
      must(net->repartition(enclave.id, lossy), "update loss");
      update.push_back(ms_since(t0));
      lossy.connections[2].connection.delay = std::chrono::milliseconds(r % 2 == 0 ? 10 : 5);
      t0 = Clock::now();
      must(net->repartition(enclave.id, lossy), "update delay");
      reshape.push_back(ms_since(t0));
    }
    check(net->heal(enclave.id), "heal");

    // The floor: one restore of a chain like ours in one namespace.
    auto pid = must(backend->network_namespace_pid(enclave.id, names[0]), "namespace pid");
    auto restore_bin =
        must(modhost::engine::find_program("iptables-restore", "iptables"), "iptables-restore");
    std::string input =
        "*filter\n:MODHOST-BENCH - [0:0]\n-A MODHOST-BENCH -s 10.255.0.1/32 -j DROP\nCOMMIT\n";
    for (int r = 0; r < rounds; ++r) {
      t0 = Clock::now();
      must(modhost::engine::run_in_netns(*pid, {restore_bin, "--noflush"}, input), "restore");
      restore.push_back(ms_since(t0));
    }
    must(modhost::engine::run_in_netns(*pid, {restore_bin, "--noflush"},
                                       "*filter\n-X MODHOST-BENCH\nCOMMIT\n"),
         "restore");

    std::printf("| %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2fx |\n", n, median(apply),
                median(heal), median(update), median(reshape), median(restore),
                median(update) / median(restore));
    std::fflush(stdout);
    if (auto s = backend->remove_enclave(enclave.id, true); !s.ok()) {
      std::fprintf(stderr, "remove enclave: %s\n", s.error().message().c_str());
    }
    net->forget(enclave.id);
  }
  return 0;
}
