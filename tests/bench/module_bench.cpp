// Module host speed: in-process calls, plugin load cycles, the isolated
// runner, and the whole `modhost module exec` process against /bin/true.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include "engine/builtins.hpp"
#include "engine/isolated_module.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/native_module.hpp"
#include "engine/null_context.hpp"
#include "support/process_util.hpp"

using namespace modhost;
using namespace modhost::engine;

namespace {

const std::string kHelloSo = std::string(MODHOST_PLUGIN_DIR) + "/hello.so";

void BM_InProcessExecuteHello(benchmark::State& state) {
  auto m = create_builtin(*builtin_registry().find("hello"), "");
  NullEnclaveContext ctx("hello");
  for (auto _ : state) {
    auto r = m.value()->execute(ctx, "{}", std::nullopt);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_InProcessExecuteHello);

void BM_PluginLoadValidateExecuteUnload(benchmark::State& state) {
  NullEnclaveContext ctx("hello");
  for (auto _ : state) {
    auto m = load_plugin(kHelloSo, "");
    auto r = m.value()->execute(ctx, "{}", std::nullopt);
    benchmark::DoNotOptimize(r);
  }  // the instance, and with it the library, is released each iteration
}
BENCHMARK(BM_PluginLoadValidateExecuteUnload)->Unit(benchmark::kMicrosecond);

void BM_IsolatedRunnerStartToReady(benchmark::State& state) {
  LoadOptions o;
  o.isolate = true;
  for (auto _ : state) {
    auto m = start_isolated(kHelloSo, "hello", "", o);
    if (!m.ok()) state.SkipWithError(m.error().message().c_str());
    state.PauseTiming();
    m.value().reset();  // stopping the child is not part of start-up
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IsolatedRunnerStartToReady)->Unit(benchmark::kMillisecond)->Iterations(30);

void BM_IsolatedExecuteRoundTrip(benchmark::State& state) {
  LoadOptions o;
  o.isolate = true;
  auto m = start_isolated(kHelloSo, "hello", "", o);
  NullEnclaveContext ctx("hello");
  for (auto _ : state) {
    auto r = m.value()->execute(ctx, "{}", std::nullopt);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_IsolatedExecuteRoundTrip)->Unit(benchmark::kMicrosecond);

void BM_Process_BinTrue(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(test::run_command({"/bin/true"}));
}
BENCHMARK(BM_Process_BinTrue)->Unit(benchmark::kMillisecond)->Iterations(50);

void BM_Process_ModhostExecBuiltinHello(benchmark::State& state) {
  const std::string modhost = std::string(MODHOST_BIN_DIR) + "/modhost";
  for (auto _ : state) {
    auto r = test::run_command({modhost, "module", "exec", "builtin:hello", "-o", "json"});
    if (r.exit_code != 0) state.SkipWithError(r.err.c_str());
  }
}
BENCHMARK(BM_Process_ModhostExecBuiltinHello)->Unit(benchmark::kMillisecond)->Iterations(50);

}  // namespace

int main(int argc, char** argv) {
  ::setenv("MODHOST_RUNNER", MODHOST_RUNNER_PATH, 1);
  init_logging(LogLevel::error);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
