// The Docker backend against raw Docker, side by side in one run:
//   enclave add + rm       vs  docker network create + rm
//   service add (running)  vs  docker run -d of the same image
//   service add --wait     (to ready: HTTP answers), reported
//   50 services, one call  parallel vs one by one
//   engine RSS with 10 enclaves of 10 services
// Prints medians and ratios. Usage: docker_bench [ROUNDS]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/docker/docker_backend.hpp"
#include "engine/batch.hpp"
#include "engine/container_module.hpp"
#include "engine/engine.hpp"
#include "support/bench_util.hpp"
#include "support/process_util.hpp"

using modhost::test::median;
using modhost::test::must;
using modhost::test::rounds;
using modhost::test::row;
using modhost::test::run_command;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";
const std::string kDocker = "/usr/bin/docker";
const std::string kImage = "modhost/datastore:0.1.0";

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 10;
  std::string scope = "bench" + std::to_string(::getpid());
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  if (run_command({kDocker, "info"}).exit_code != 0) {
    std::fprintf(stderr, "no Docker engine answers; start one with scripts/start-docker\n");
    return 1;
  }
  must(run_command({kModhost, "image", "load", std::string(MODHOST_IMAGE_DIR) + "/modhost-datastore.tar"}),
       "load");

  std::printf("| what | modhost | raw docker | ratio |\n|---|---|---|---|\n");

  // Enclave add + rm, both through their CLIs.
  int i = 0;
  auto ours = rounds(n, [&] {
    std::string name = "b" + std::to_string(i++);
    must(run_command({kModhost, "enclave", "add", "--name", name}), "enclave add");
    must(run_command({kModhost, "enclave", "rm", name}), "enclave rm");
  });
  auto base = rounds(n, [&] {
    std::string name = "modhost-raw-" + scope + "-" + std::to_string(i++);
    must(run_command({kDocker, "network", "create", name}), "docker network create");
    must(run_command({kDocker, "network", "rm", name}), "docker network rm");
  });
  row("enclave add + rm (CLI) vs docker network create + rm", median(ours), median(base));

  // Service add to running, and to ready.
  must(run_command({kModhost, "enclave", "add", "--name", "svc"}), "enclave add");
  must(run_command({kDocker, "network", "create", "modhost-raw-" + scope}), "network");
  ours = rounds(n, [&] {
    std::string name = "s" + std::to_string(i++);
    must(run_command({kModhost, "service", "add", "svc", name, kImage, "--ports", "http=1323"}),
         "service add");
  });
  base = rounds(n, [&] {
    std::string name = "modhost-raw-" + scope + "-" + std::to_string(i++);
    must(run_command({kDocker, "run", "-d", "--name", name, "--network", "modhost-raw-" + scope, "-p",
                      "127.0.0.1::1323", kImage}),
         "docker run");
  });
  row("service add to running vs docker run -d", median(ours), median(base));
  auto ready = rounds(n, [&] {
    std::string name = "r" + std::to_string(i++);
    must(run_command({kModhost, "service", "add", "svc", name, kImage, "--ports", "http=1323", "--wait",
                      "http:http/health", "--wait-interval", "20ms"}),
         "service add --wait");
  });
  row("service add to ready (HTTP /health answers)", median(ready), median(base));
  run_command(
      {"/bin/sh", "-c", "docker rm -f $(docker ps -aq --filter name=modhost-raw-" + scope + ") >/dev/null"});
  run_command({kDocker, "network", "rm", "modhost-raw-" + scope});
  must(run_command({kModhost, "clean", "--all"}), "clean");

  // 50 services: one by one, then in parallel through the engine.
  modhost::backend::DockerOptions o;
  o.scope = scope;
  auto backend = modhost::backend::DockerBackend::create(o);
  auto& b = *backend.value();
  auto engine_r = modhost::engine::Engine::create({});
  auto& engine = engine_r.value();
  (void)engine->backend();
  auto e = b.create_enclave("fifty");
  if (!e.ok()) return std::fprintf(stderr, "%s\n", e.error().message().c_str()), 1;
  auto add_many = [&](const std::string& prefix, int parallel) {
    std::vector<modhost::ServiceConfig> configs;
    for (int k = 0; k < 50; ++k) {
      modhost::ServiceConfig c;
      c.name = prefix + std::to_string(k);
      c.image = kImage;
      configs.push_back(c);
    }
    auto t0 = Clock::now();
    auto r = modhost::engine::add_services(b, e->id, configs, parallel);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!r.ok()) std::fprintf(stderr, "add_services: %s\n", r.error().message().c_str());
    return ms;
  };
  double serial = add_many("a", 1);
  double parallel = add_many("p", 8);
  row("50 services, one call, 8 in parallel vs one by one", parallel, serial);

  // Memory: the engine process holding 10 enclaves of 10 services.
  long before = rss_kb();
  std::vector<std::string> ids;
  for (int k = 0; k < 10; ++k) {
    auto en = b.create_enclave("mem" + std::to_string(k));
    if (!en.ok()) break;
    ids.push_back(en->id);
    std::vector<modhost::ServiceConfig> configs;
    for (int s = 0; s < 10; ++s) {
      modhost::ServiceConfig c;
      c.name = "s" + std::to_string(s);
      c.image = kImage;
      configs.push_back(c);
    }
    (void)modhost::engine::add_services(b, en->id, configs, 8);
  }
  for (const auto& id : ids) (void)b.list_services(id);
  (void)b.list_enclaves();
  std::printf("\nengine RSS: %ld KiB before, %ld KiB with 10 enclaves x 10 services (peak %ld KiB)\n", before,
              rss_kb(), [] {
                rusage ru{};
                getrusage(RUSAGE_SELF, &ru);
                return ru.ru_maxrss;
              }());
  (void)b.clean(true);

  // Image modules: `modhost module exec IMAGE` against `docker run --rm` of
  // the same image (its entrypoint exits at once without an enclave API).
  std::printf("\n| what | modhost | raw docker | ratio |\n|---|---|---|---|\n");
  for (const char* archive : {"modhost-module-hello.tar", "test-module-api_probe.tar"}) {
    must(run_command({kModhost, "image", "load", std::string(MODHOST_IMAGE_DIR) + "/" + archive}), "load");
  }
  must(run_command({kModhost, "enclave", "add", "--name", "modexec"}), "enclave add");
  ours = rounds(n, [&] {
    must(run_command({kModhost, "module", "exec", "modhost/hello-module:0.1.0", "--enclave-id", "modexec"}),
         "module exec");
  });
  base = rounds(n, [&] {
    auto r = run_command({kDocker, "run", "--rm", "modhost/hello-module:0.1.0"});
    if (r.exit_code != 2) std::fprintf(stderr, "unexpected exit %d: %s\n", r.exit_code, r.err.c_str());
  });
  row("module exec IMAGE (existing enclave) vs docker run --rm", median(ours), median(base));
  auto fresh = rounds(n, [&] {
    must(run_command({kModhost, "module", "exec", "modhost/hello-module:0.1.0"}),
         "module exec (new enclave)");
  });
  row("module exec IMAGE (new enclave) vs docker run --rm", median(fresh), median(base));

  // Start to available, and the enclave API seen from inside a module.
  auto e2 = b.find_enclave("modexec");
  auto ctx = engine->enclave_context(e2->id, "api_probe");
  std::vector<double> start_ms;
  double api_micros = 0, log_micros = 0;
  for (int k = 0; k < n; ++k) {
    modhost::engine::ContainerModuleOptions co;
    auto t0 = Clock::now();
    auto m =
        modhost::engine::start_container_module(b, e2->id, "modhost-test/api_probe-module:1", "", *ctx, co);
    start_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!m.ok()) return std::fprintf(stderr, "%s\n", m.error().message().c_str()), 1;
    if (k == 0) {
      auto r = m.value()->execute(*ctx, R"({"op":"bench","calls":500})", std::nullopt);
      if (r.ok()) api_micros = boost::json::parse(r.value()).at("medianMicros").to_number<double>();
      auto l = m.value()->execute(*ctx, R"({"op":"bench","calls":500,"call":"log"})", std::nullopt);
      if (l.ok()) log_micros = boost::json::parse(l.value()).at("medianMicros").to_number<double>();
    }
  }
  row("module container start to available (IsAvailable)", median(start_ms), 0);
  std::printf(
      "| enclave API round trip from inside a module container (list services, median of 500) | %.0f us | | "
      "|\n",
      api_micros);
  std::printf(
      "| enclave API round trip from inside a module container (log, no backend call, median of 500) | %.0f "
      "us | | |\n",
      log_micros);
  auto cleaned = b.clean(true);
  std::printf("cleaned %zu resources\n", cleaned.ok() ? cleaned->removed.size() : 0);
  return 0;
}
