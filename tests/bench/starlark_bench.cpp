// `modhost run`, side by side in one run:
//   interpreting a 200-instruction package (modhost-starlark, whole process)
//     vs /bin/true (the cost of any process), and `modhost run --dry-run`
//     (interpret + validate against an enclave)
//   plan.add_services of 20 services vs the same 20 added one by one
//     (whole `modhost run` processes, alternating), per backend
// Prints medians and ratios. Usage: starlark_bench [ROUNDS] [docker|native]...
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/bench_util.hpp"
#include "support/process_util.hpp"

using modhost::test::median;
using modhost::test::must;
using modhost::test::row;
using modhost::test::run_command;

namespace {

namespace fs = std::filesystem;
const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";
const std::string kInterpreter = std::string(MODHOST_BIN_DIR) + "/modhost-starlark";

// CPU time the whole machine has spent busy (user, nice, system, irq,
// softirq) since boot, in ms: around a run, what the run cost the machine,
// including the container engine's own processes.
double machine_busy_ms() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return static_cast<double>(user + nice + system + irq + softirq) * 1000.0 /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A package of 200 instructions over 3 files: 40 rounds of add_service (with
// a ready condition), exec, wait, render_templates and verify.
std::string make_package(const fs::path& dir) {
  write(dir / "kurtosis.yml", "name: github.com/bench/big\n");
  write(dir / "lib/svc.star",
        "def config(i):\n"
        "    return ServiceConfig(image = \"modhost/busybox:1\", cmd = [\"sleep\", \"3600\"],\n"
        "        ports = {\"http\": PortSpec(8000 + i)}, env_vars = {\"I\": str(i)},\n"
        "        ready_conditions = ReadyCondition(recipe = ExecRecipe(command = [\"true\"]), field = "
        "\"code\",\n"
        "                                          assertion = \"==\", target_value = 0))\n");
  write(dir / "lib/tmpl.star", "T = \"{{.Name}} listens on {{.Port}}\\n\"\n");
  write(dir / "main.star",
        "svc = import_module(\"/lib/svc.star\")\n"
        "tmpl = import_module(\"/lib/tmpl.star\")\n"
        "def run(plan, rounds = 40):\n"
        "    for i in range(rounds):\n"
        "        s = plan.add_service(name = \"s%d\" % i, config = svc.config(i))\n"
        "        r = plan.exec(service_name = s.name, recipe = ExecRecipe(command = [\"echo\", "
        "s.ip_address]))\n"
        "        plan.wait(service_name = s.name, recipe = ExecRecipe(command = [\"true\"]), field = "
        "\"code\",\n"
        "                  assertion = \"==\", target_value = 0)\n"
        "        plan.render_templates(config = {\"s.txt\": struct(template = tmpl.T,\n"
        "                              data = {\"Name\": s.name, \"Port\": 8000 + i})}, name = \"t%d\" % i)\n"
        "        plan.verify(r[\"code\"], \"==\", 0)\n");
  return R"({"package_dir": ")" + dir.string() + R"(", "script": "", "args": {}})";
}

double time_ms(const std::vector<std::string>& argv, const char* what) {
  const auto t0 = std::chrono::steady_clock::now();
  must(run_command(argv), what);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 9;
  std::vector<std::string> backends;
  for (int i = 2; i < argc; ++i) backends.emplace_back(argv[i]);
  if (backends.empty()) backends = {"docker"};
  const std::string scope = "bench" + std::to_string(::getpid());
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  const fs::path dir = fs::temp_directory_path() / ("modhost-starlark-bench-" + std::to_string(::getpid()));
  const std::string request = make_package(dir / "big");
  write(dir / "request.json", request);

  std::printf("| what | modhost | baseline | ratio |\n|---|---|---|---|\n");
  {
    std::vector<double> ours, base;
    const std::vector<std::string> interpret = {
        "/bin/sh", "-c", kInterpreter + " interpret < " + (dir / "request.json").string() + " > /dev/null"};
    const std::vector<std::string> nothing = {
        "/bin/sh", "-c", "/bin/true < " + (dir / "request.json").string() + " > /dev/null"};
    for (int i = 0; i < n + 1; ++i) {
      const double a = time_ms(interpret, "interpret");
      const double b = time_ms(nothing, "/bin/true");
      if (i == 0) continue;  // warm-up
      ours.push_back(a);
      base.push_back(b);
    }
    row("interpret a 200-instruction package (process) vs /bin/true", median(ours), median(base));
  }

  for (const std::string& backend : backends) {
    ::setenv("MODHOST_BACKEND", backend.c_str(), 1);
    must(run_command({kModhost, "image", "load", std::string(MODHOST_IMAGE_DIR) + "/modhost-busybox.tar"}),
         "image load");
    // --dry-run: interpretation plus validation against an existing enclave.
    must(run_command({kModhost, "enclave", "add", "--name", "dry"}), "enclave add");
    std::vector<double> dry;
    for (int i = 0; i < n; ++i) {
      dry.push_back(
          time_ms({kModhost, "-o", "json", "run", (dir / "big").string(), "--dry-run", "--enclave", "dry"},
                  "run --dry-run"));
    }
    must(run_command({kModhost, "enclave", "rm", "-f", "dry"}), "enclave rm");
    row(("modhost run --dry-run of it (" + backend + ")").c_str(), median(dry), 0);

    // 20 services: add_services (parallel) vs one add_service each.
    write(dir / "parallel.star",
          "def run(plan):\n"
          "    plan.add_services({\"s%d\" % i: ServiceConfig(image = \"modhost/busybox:1\", cmd = "
          "[\"sleep\", \"3600\"])\n"
          "                       for i in range(20)})\n");
    write(dir / "serial.star",
          "def run(plan):\n"
          "    for i in range(20):\n"
          "        plan.add_service(name = \"s%d\" % i, config = ServiceConfig(image = "
          "\"modhost/busybox:1\", cmd = [\"sleep\", \"3600\"]))\n");
    const int m = std::max(3, n / 3);
    for (const char* parallelism : {"4", "8"}) {
      std::vector<double> par, ser, par_cpu, ser_cpu;
      for (int i = 0; i < m; ++i) {
        for (const bool parallel : {true, false}) {
          const std::string enclave = std::string("b") + (parallel ? "p" : "s") + std::to_string(i);
          const double busy = machine_busy_ms();
          const double t = time_ms(
              {kModhost, "-o", "json", "run", (dir / (parallel ? "parallel.star" : "serial.star")).string(),
               "--enclave", enclave, "--parallelism", parallelism},
              "run");
          (parallel ? par : ser).push_back(t);
          (parallel ? par_cpu : ser_cpu).push_back(machine_busy_ms() - busy);
          must(run_command({kModhost, "enclave", "rm", "-f", enclave}), "enclave rm");
        }
      }
      const double p = median(par), s = median(ser);
      char what[128];
      std::snprintf(what, sizeof what, "add_services of 20 (parallelism %s) vs 20 add_service (%s)",
                    parallelism, backend.c_str());
      row(what, p, s);
      std::printf("|   => add_services %.2fx faster |  |  |  |\n", s / p);
      // No schedule of the one-by-one work on this machine's cores ends
      // before its CPU time / cores: the most parallelism can give here.
      const double cores = static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
      std::printf(
          "|   machine CPU: one by one %.0f ms, add_services %.0f ms, on %.0f cores: ceiling %.2fx, "
          "add_services kept the cores %.0f%% busy |  |  |  |\n",
          median(ser_cpu), median(par_cpu), cores, s / (median(ser_cpu) / cores),
          100.0 * median(par_cpu) / (p * cores));
    }
    (void)run_command({kModhost, "clean", "--all"});
  }
  fs::remove_all(dir);
  return 0;
}
