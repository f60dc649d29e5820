// The native backend against raw Docker and raw namespaces, side by side in
// one run (medians of N rounds; ratios against the baseline measured here):
//
//   service add to running (CLI)       vs  docker run -d of the same image
//   service add to running (library)   vs  unshare + chroot of a shell that exits
//   enclave add, rm (CLI, library)        (target: under 20 ms each)
//   100 services in one enclave: time, and host memory they hold
//
// Usage: native_bench [ROUNDS]. Needs root; the Docker rows need an engine.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "backends/native/native_backend.hpp"
#include "support/bench_util.hpp"
#include "support/native_leftovers.hpp"
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

template <class R>
void must_ok(const R& r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s failed: %s\n", what, r.error().message().c_str());
    std::exit(1);
  }
}

long meminfo_kb(const char* key) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::string(key).size()));
  }
  return 0;
}

// Proportional set size (shared pages split between their users) of every
// shim and PID 1 (modhost-shim, modhost-init), in kB.
long helpers_rss_kb() {
  long total = 0;
  std::error_code ec;
  for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
    std::ifstream comm(p.path() / "comm");
    std::string c;
    std::getline(comm, c);
    if (c != "modhost-shim" && c != "modhost-init") continue;
    std::ifstream rollup(p.path() / "smaps_rollup");
    for (std::string line; std::getline(rollup, line);) {
      if (line.rfind("Pss:", 0) == 0) total += std::stol(line.substr(4));
    }
  }
  return total;
}

// Waits until no link labelled with the scope is left (the bridges of
// removed enclaves go in the background).
void wait_bridges_gone(const std::string& scope) {
  for (int attempt = 0; attempt < 5000 && !modhost::test::native_scope_links(scope).empty(); ++attempt)
    ::usleep(1000);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 9;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "the native backend needs root\n");
    return 1;
  }
  const std::string scope = "bench" + std::to_string(::getpid());
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  const std::string archive = std::string(MODHOST_IMAGE_DIR) + "/modhost-datastore.tar";
  must(run_command({kModhost, "--backend", "native", "image", "load", archive}), "native image load");
  const bool docker = run_command({kDocker, "info"}).exit_code == 0;
  if (docker)
    must(run_command({kModhost, "--backend", "docker", "image", "load", archive}), "docker image load");

  modhost::backend::NativeOptions options;
  options.scope = scope;
  auto made = modhost::backend::NativeBackend::create(options);
  must_ok(made, "native backend");
  auto& b = *made.value();

  std::printf("| what | native | baseline | ratio |\n|---|---|---|---|\n");

  // Enclave add and rm. rm hands the bridge's deletion to a helper (the
  // kernel's tens of milliseconds); add and rm are each timed with the kernel
  // idle (the previous bridge gone), and apart from that, back to back, where
  // an add waits for the kernel to finish the previous rm.
  int i = 0;
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  std::vector<double> cli_enclave_add, cli_enclave_rm;
  for (int r = 0; r < n; ++r) {
    const std::string name = "e" + std::to_string(i++);
    auto t0 = Clock::now();
    must(run_command({kModhost, "--backend", "native", "enclave", "add", "--name", name}), "enclave add");
    cli_enclave_add.push_back(ms_since(t0));
    t0 = Clock::now();
    must(run_command({kModhost, "--backend", "native", "enclave", "rm", name}), "enclave rm");
    cli_enclave_rm.push_back(ms_since(t0));
    wait_bridges_gone(scope);
  }
  std::vector<double> lib_enclave_add, lib_enclave_rm, lib_enclave_gone;
  for (int r = 0; r < n; ++r) {
    auto t0 = Clock::now();
    auto e = b.create_enclave("l" + std::to_string(i++));
    must_ok(e, "create_enclave");
    lib_enclave_add.push_back(ms_since(t0));
    t0 = Clock::now();
    must_ok(b.remove_enclave(e->id, true), "remove_enclave");
    lib_enclave_rm.push_back(ms_since(t0));
    wait_bridges_gone(scope);
    lib_enclave_gone.push_back(ms_since(t0));
  }
  auto back_to_back = rounds(n, [&] {
    auto e = b.create_enclave("l" + std::to_string(i++));
    must_ok(e, "create_enclave");
    must_ok(b.remove_enclave(e->id, true), "remove_enclave");
  });
  wait_bridges_gone(scope);
  std::vector<double> docker_net;
  if (docker) {
    docker_net = rounds(n, [&] {
      const std::string name = "modhost-raw-" + scope + "-" + std::to_string(i++);
      must(run_command({kDocker, "network", "create", name}), "docker network create");
      must(run_command({kDocker, "network", "rm", name}), "docker network rm");
    });
  }
  row("enclave add + rm (CLI) vs docker network create + rm",
      median(cli_enclave_add) + median(cli_enclave_rm), median(docker_net));
  row("  enclave add (CLI)", median(cli_enclave_add), 0);
  row("  enclave rm (CLI)", median(cli_enclave_rm), 0);
  row("  enclave add (library)", median(lib_enclave_add), 0);
  row("  enclave rm (library)", median(lib_enclave_rm), 0);
  row("  rm until the bridge is gone (library)", median(lib_enclave_gone), 0);
  row("  add + rm back to back (library)", median(back_to_back), 0);

  // Service add to running.
  must(run_command({kModhost, "--backend", "native", "enclave", "add", "--name", "svc"}), "enclave add");
  auto cli_add = rounds(n, [&] {
    must(run_command({kModhost, "--backend", "native", "service", "add", "svc", "s" + std::to_string(i++),
                      kImage, "--ports", "http=1323"}),
         "service add");
  });
  std::vector<double> docker_run;
  if (docker) {
    must(run_command({kDocker, "network", "create", "modhost-raw-" + scope}), "network");
    docker_run = rounds(n, [&] {
      must(run_command({kDocker, "run", "-d", "--name", "modhost-raw-" + scope + "-" + std::to_string(i++),
                        "--network", "modhost-raw-" + scope, "-p", "127.0.0.1::1323", kImage}),
           "docker run");
    });
  }
  row("service add to running (CLI) vs docker run -d", median(cli_add), median(docker_run));
  auto svc = b.find_enclave("svc");
  must_ok(svc, "find svc");
  auto lib_add = rounds(n, [&] {
    modhost::ServiceConfig c;
    c.name = "l" + std::to_string(i++);
    c.image = kImage;
    c.ports = {modhost::PortSpec{"http", 1323, "tcp"}};
    must_ok(b.add_service(svc->id, c), "add_service");
  });
  // Without the start check (the window in which a service that exits at
  // once fails its add): how long until its program runs.
  modhost::backend::NativeOptions quick = options;
  quick.startup_check = std::chrono::milliseconds(0);
  auto made_quick = modhost::backend::NativeBackend::create(quick);
  must_ok(made_quick, "native backend (no start check)");
  auto lib_started = rounds(n, [&] {
    modhost::ServiceConfig c;
    c.name = "k" + std::to_string(i++);
    c.image = kImage;
    c.ports = {modhost::PortSpec{"http", 1323, "tcp"}};
    must_ok(made_quick.value()->add_service(svc->id, c), "add_service (no start check)");
  });
  // The floor: new namespaces and a chroot into the image's files, no
  // cgroup, network or overlay.
  const std::string root = "/tmp/modhost-bench-root-" + scope;
  std::filesystem::create_directories(root + "/bin");
  std::filesystem::copy_file("/bin/busybox", root + "/bin/busybox");
  std::filesystem::create_symlink("busybox", root + "/bin/true");
  auto raw = rounds(n, [&] {
    must(run_command({"/usr/bin/unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                      "/usr/sbin/chroot", root, "/bin/true"}),
         "unshare + chroot");
  });
  std::filesystem::remove_all(root);
  row("service add to running (library) vs unshare+chroot of true", median(lib_add), median(raw));
  row("  (library) vs docker run -d", median(lib_add), median(docker_run));
  row("service add to started, no start check (library) vs docker run -d", median(lib_started),
      median(docker_run));

  // 100 services in one enclave.
  auto big = b.create_enclave("hundred");
  must_ok(big, "create hundred");
  const long avail_before = meminfo_kb("MemAvailable:");
  auto t0 = Clock::now();
  for (int k = 0; k < 100; ++k) {
    modhost::ServiceConfig c;
    c.name = "d" + std::to_string(k);
    c.image = kImage;
    c.ports = {modhost::PortSpec{"http", 1323, "tcp"}};
    must_ok(b.add_service(big->id, c), "add_service (100)");
  }
  const double hundred_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const long avail_after = meminfo_kb("MemAvailable:");
  const long helpers = helpers_rss_kb();
  auto t1 = Clock::now();
  must_ok(b.remove_enclave(big->id, true), "remove hundred");
  const double remove_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  wait_bridges_gone(scope);  // the helper deletes the veths, then the bridge
  const double gone_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  std::printf(
      "\n100 datastore services in one enclave: added in %.0f ms (%.1f ms each), removed in %.0f ms "
      "(links gone after %.0f ms);\n"
      "host memory taken: %.1f MB (MemAvailable before - after), of which the shims and inits hold %.1f MB "
      "(PSS)\n",
      hundred_ms, hundred_ms / 100, remove_ms, gone_ms, (avail_before - avail_after) / 1024.0,
      helpers / 1024.0);

  (void)b.clean(true);
  if (docker) {
    run_command({"/bin/sh", "-c",
                 "docker rm -f $(docker ps -aq --filter name=modhost-raw-" + scope + ") >/dev/null"});
    run_command({kDocker, "network", "rm", "modhost-raw-" + scope});
  }
  return 0;
}
