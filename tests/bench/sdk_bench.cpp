// What an EnclaveTest costs around a test body with one datastore service:
// SDK setup (enclave + service running) and teardown (enclave removed),
// side by side with the same through raw docker in the same run
// (docker network create + docker run -d; docker rm -f + docker network rm).
// Prints medians and ratios. Usage: sdk_bench [ROUNDS]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "modhost/client.hpp"
#include "support/process_util.hpp"

using Clock = std::chrono::steady_clock;
using modhost::test::run_command;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void must(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "%s failed\n", what);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const std::string image = "modhost/datastore:0.1.0";
  must(run_command({std::string(MODHOST_BIN_DIR) + "/modhost", "image", "load",
                    std::string(MODHOST_IMAGE_DIR) + "/modhost-datastore.tar"})
               .exit_code == 0,
       "image load");
  modhost::ClientOptions options;
  options.scope = "bench" + std::to_string(::getpid());
  auto client = modhost::Client::embedded(options);
  must(client.ok() && client->ping().ok(), "a Docker engine");
  // The same through an engine daemon (its own directory, the same scope).
  const std::string engine_dir = "/tmp/modhost-sdk-bench-" + std::to_string(::getpid());
  ::setenv("MODHOST_ENGINE_DIR", engine_dir.c_str(), 1);
  ::setenv("MODHOST_SCOPE", options.scope.c_str(), 1);
  must(run_command({std::string(MODHOST_BIN_DIR) + "/modhost", "engine", "start"}).exit_code == 0,
       "engine start");
  auto remote = modhost::Client::connect("unix://" + engine_dir + "/engine.sock");
  must(remote.ok(), "connecting the daemon");

  std::vector<double> sdk_setup, sdk_teardown, raw_setup, raw_teardown, daemon_setup, daemon_teardown;
  for (int i = 0; i < 2 * rounds; ++i) {
    const bool via_daemon = i % 2 == 1;
    modhost::Client& c = via_daemon ? remote.value() : client.value();
    auto t0 = Clock::now();
    std::optional<modhost::Enclave> enclave;
    {
      auto e = c.create_enclave("sdk-bench-" + std::to_string(i));
      must(e.ok(), "create enclave");
      enclave.emplace(std::move(e).value());
    }
    modhost::ServiceConfig db;
    db.name = "db";
    db.image = image;
    db.ports = {{"http", 1323, "tcp"}};
    must(enclave->add_service(db).ok(), "add service");
    (via_daemon ? daemon_setup : sdk_setup).push_back(ms_since(t0));
    t0 = Clock::now();
    enclave.reset();
    (via_daemon ? daemon_teardown : sdk_teardown).push_back(ms_since(t0));
    if (via_daemon) continue;

    const std::string net = "sdk-bench-raw-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    t0 = Clock::now();
    must(run_command({"/usr/bin/docker", "network", "create", net}).exit_code == 0, "docker network create");
    must(run_command({"/usr/bin/docker", "run", "-d", "--name", net, "--network", net, "-p",
                      "127.0.0.1::1323", image})
                 .exit_code == 0,
         "docker run");
    raw_setup.push_back(ms_since(t0));
    t0 = Clock::now();
    must(run_command({"/usr/bin/docker", "rm", "-f", net}).exit_code == 0, "docker rm");
    must(run_command({"/usr/bin/docker", "network", "rm", net}).exit_code == 0, "docker network rm");
    raw_teardown.push_back(ms_since(t0));
  }
  run_command({std::string(MODHOST_BIN_DIR) + "/modhost", "engine", "stop"});
  run_command({"/bin/rm", "-rf", engine_dir});
  std::printf(
      "| EnclaveTest with one datastore | SDK, engine in process | SDK, engine daemon | raw docker | "
      "ratios to raw |\n|---|---:|---:|---:|---:|\n");
  std::printf("| setup (enclave + service running) | %.1f ms | %.1f ms | %.1f ms | %.2fx, %.2fx |\n",
              median(sdk_setup), median(daemon_setup), median(raw_setup),
              median(sdk_setup) / median(raw_setup), median(daemon_setup) / median(raw_setup));
  std::printf("| teardown (all removed) | %.1f ms | %.1f ms | %.1f ms | %.2fx, %.2fx |\n",
              median(sdk_teardown), median(daemon_teardown), median(raw_teardown),
              median(sdk_teardown) / median(raw_teardown), median(daemon_teardown) / median(raw_teardown));
  return 0;
}
