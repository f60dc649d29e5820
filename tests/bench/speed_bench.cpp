// What a user times from a shell, side by side in one run: whole CLI
// processes, modhost and its baseline alternating (A B A B ...), medians.
//   native `service add` (to running)   vs  docker run -d of the same image
//   Docker `service add` (to running)   vs  docker run -d
//   module exec IMAGE (Docker)          vs  docker run --rm of the same image
//   modhost --version, module exec builtin:hello, native enclave ls
//                                       vs  /bin/true (any process's cost)
//   native enclave add + rm             vs  docker network create + rm
// Prints a table with each row's goal. Usage: speed_bench [ROUNDS]
// (root and a Docker engine; images from the build tree).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "support/bench_util.hpp"
#include "support/process_util.hpp"

using modhost::test::median;
using modhost::test::must;
using modhost::test::run_command;

namespace {

const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";
const std::string kDocker = "/usr/bin/docker";
const std::string kBusybox = "modhost/busybox:1";
const std::string kModuleImage = "modhost/hello-module:0.1.0";

using Argv = std::vector<std::string>;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// One timed step: a command, or several run one after the other.
double timed(const std::vector<Argv>& steps, int expected_exit = 0) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& argv : steps) {
    auto r = run_command(argv);
    if (r.exit_code != expected_exit) {
      std::fprintf(stderr, "%s exited %d: %s%s\n", argv.front().c_str(), r.exit_code, r.out.c_str(),
                   r.err.c_str());
      std::exit(1);
    }
  }
  return ms_since(t0);
}

struct Paired {
  std::vector<double> ours, base;
};

// n rounds of ours(i) then base(i); then the untimed cleanup of every round.
// Removal is left to the end on purpose: a container's network namespace is
// dismantled by the kernel after its removal returns, and an add right after
// a remove waits for that (both backends); a user adding services one after
// another does not.
Paired paired(int n, const std::function<double(int)>& ours, const std::function<double(int)>& base,
              const std::function<void(int)>& cleanup = {}) {
  // Back to back, as a user runs commands one after another: dockerd and
  // containerd keep working for a while after `docker run -d` returns, and
  // that work lands in the next modhost command's time (it is left in).
  Paired p;
  for (int i = 0; i < n; ++i) {
    p.ours.push_back(ours(i));
    p.base.push_back(base(i));
  }
  for (int i = 0; cleanup && i < n; ++i) cleanup(i);
  ::usleep(500'000);  // let the removals settle before the next row
  return p;
}

void header() { std::printf("| what | goal | modhost | baseline | result |\n|---|---|---:|---:|---|\n"); }

// "faster": the result is baseline/ours ("20.1x faster"); else ours/baseline.
void print(const char* what, const char* goal, double ours, double base, bool faster) {
  char result[64];
  if (faster)
    std::snprintf(result, sizeof result, "%.1fx faster", base / ours);
  else
    std::snprintf(result, sizeof result, "%.2fx", ours / base);
  std::printf("| %s | %s | %.1f ms | %.1f ms | %s |\n", what, goal, ours, base, result);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(3, std::atoi(argv[1])) : 9;
  const std::string scope = "speed" + std::to_string(::getpid());
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  const std::string images = MODHOST_IMAGE_DIR;
  for (const char* backend : {"docker", "native"}) {
    must(run_command({kModhost, "--backend", backend, "image", "load", images + "/modhost-busybox.tar"}),
         "image load");
  }
  must(run_command({kModhost, "--backend", "docker", "image", "load", images + "/modhost-module-hello.tar"}),
       "image load");
  const std::string net = scope + "-net";
  must(run_command({kDocker, "network", "create", net}), "docker network create");
  must(run_command({kModhost, "--backend", "native", "enclave", "add", "--name", "n"}), "enclave add");
  must(run_command({kModhost, "--backend", "docker", "enclave", "add", "--name", "d"}), "enclave add");

  auto docker_run = [&](int i) {
    return timed({{kDocker, "run", "-d", "--network", net, "--name", scope + "-c" + std::to_string(i),
                   kBusybox, "sleep", "3600"}});
  };
  auto docker_rm = [&](int i) { (void)run_command({kDocker, "rm", "-f", scope + "-c" + std::to_string(i)}); };
  auto service_add = [&](const char* backend, const char* enclave) {
    return [=](int i) {
      return timed({{kModhost, "--backend", backend, "service", "add", enclave, "s" + std::to_string(i),
                     kBusybox, "--", "sleep", "3600"}});
    };
  };
  auto service_rm = [&](const char* backend, const char* enclave, int i) {
    (void)run_command({kModhost, "--backend", backend, "service", "rm", enclave, "s" + std::to_string(i)});
  };

  header();
  {
    auto p = paired(n, service_add("native", "n"), docker_run, [&](int i) {
      service_rm("native", "n", i);
      docker_rm(i);
    });
    print("`modhost --backend native service add` (to running) vs `docker run -d`", "≥ 20x faster",
          median(p.ours), median(p.base), true);
  }
  {
    auto p = paired(n, service_add("docker", "d"), docker_run, [&](int i) {
      service_rm("docker", "d", i);
      docker_rm(i);
    });
    print("`modhost service add` (Docker, to running) vs `docker run -d`", "≤ 1.05x", median(p.ours),
          median(p.base), false);
  }
  {
    auto p = paired(
        n,
        [&](int) {
          return timed(
              {{kModhost, "--backend", "docker", "module", "exec", kModuleImage, "--enclave-id", "d"}});
        },
        // The module's entrypoint exits 2 at once without an engine to serve.
        [&](int) {
          return timed({{kDocker, "run", "--rm", kModuleImage}}, 2);
        });
    print("`modhost module exec IMAGE` (Docker, existing enclave) vs `docker run --rm`", "≤ 1.2x",
          median(p.ours), median(p.base), false);
  }
  const std::vector<std::pair<const char*, Argv>> quick{
      {"`modhost --version`", {kModhost, "--version"}},
      {"`modhost module exec builtin:hello`", {kModhost, "module", "exec", "builtin:hello"}},
      {"`modhost --backend native enclave ls`", {kModhost, "--backend", "native", "enclave", "ls"}},
  };
  for (const auto& [what, cmd] : quick) {
    auto p = paired(
        std::max(n, 21), [&](int) { return timed({cmd}); }, [&](int) { return timed({{"/bin/true"}}); });
    print((std::string(what) + " vs `/bin/true`").c_str(), "< 5 ms", median(p.ours), median(p.base), false);
  }
  {
    auto p = paired(
        n,
        [&](int) {
          return timed({{kModhost, "--backend", "native", "enclave", "add", "--name", "e"},
                        {kModhost, "--backend", "native", "enclave", "rm", "-f", "e"}});
        },
        [&](int) {
          return timed(
              {{kDocker, "network", "create", scope + "-e"}, {kDocker, "network", "rm", scope + "-e"}});
        });
    print("`modhost --backend native enclave add` + `rm` vs `docker network create` + `rm`", "< 20 ms",
          median(p.ours), median(p.base), false);
  }

  (void)run_command({kModhost, "--backend", "native", "clean", "--all"});
  (void)run_command({kModhost, "--backend", "docker", "clean", "--all"});
  (void)run_command({kDocker, "network", "rm", net});
  return 0;
}
