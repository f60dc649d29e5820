// Native modules in modhost-module-runner: handshake, crashes, timeouts,
// stderr forwarding, and nothing left behind.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "engine/isolated_module.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/null_context.hpp"
#include "support/process_util.hpp"

using namespace modhost;
using namespace modhost::engine;
using namespace std::chrono_literals;

namespace {

std::string test_module(const std::string& name) {
  return std::string(MODHOST_TEST_MODULE_DIR) + "/" + name + ".so";
}

class IsolatedRunner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("MODHOST_RUNNER", MODHOST_RUNNER_PATH, 1);
    sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(200);
    sink_->set_pattern("[%n] %l: %v");
    add_log_sink(sink_);
    init_logging(LogLevel::info);
  }

  void SetUp() override { ASSERT_TRUE(test::runner_dirs(::getpid()).empty()); }

  void TearDown() override {
    // Every runner child is gone and its runtime directory removed.
    EXPECT_TRUE(test::children_of(::getpid()).empty()) << "a runner child outlived its module";
    EXPECT_TRUE(test::runner_dirs(::getpid()).empty()) << "a runner directory was left behind";
  }

  Result<std::unique_ptr<ModuleInstance>> start(const std::string& module_arg, const std::string& params = "",
                                                std::chrono::milliseconds start_timeout = 10s) {
    LoadOptions o;
    o.isolate = true;
    o.start_timeout = start_timeout;
    return start_isolated(module_arg, "test", params, o);
  }

  bool logged(const std::string& needle) {
    for (const auto& line : sink_->last_formatted()) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  static inline std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  NullEnclaveContext ctx_{"test"};
};

TEST_F(IsolatedRunner, ExecutesABuiltinAndAPlugin) {
  auto builtin = start("builtin:hello");
  ASSERT_TRUE(builtin.ok()) << builtin.error().message();
  EXPECT_EQ(builtin.value()->metadata().name, "hello");
  auto r = builtin.value()->execute(ctx_, R"({"n":1})", 5s);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_NE(r.value().find(R"("params":{"n":1})"), std::string::npos);

  auto plugin = start(std::string(MODHOST_PLUGIN_DIR) + "/hello.so", "", 10s);
  ASSERT_TRUE(plugin.ok()) << plugin.error().message();
  EXPECT_EQ(plugin.value()->metadata().source, std::string(MODHOST_PLUGIN_DIR) + "/hello.so");
}

TEST_F(IsolatedRunner, SegfaultIsReportedAndTheHostCarriesOn) {
  test::let_children_die_from_signals();
  auto m = start(test_module("segfault"));
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto r = m.value()->execute(ctx_, "", 10s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::crashed);
  EXPECT_NE(r.error().message().find("module 'segfault' crashed (signal 11"), std::string::npos)
      << r.error().message();
  // A later call on the dead module is a clear error, not a hang.
  auto again = m.value()->execute(ctx_, "", 10s);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message().find("no longer running"), std::string::npos);
  // And the host still runs other modules.
  auto hello = start("builtin:hello");
  ASSERT_TRUE(hello.ok());
  EXPECT_TRUE(hello.value()->execute(ctx_, "{}", 5s).ok());
}

TEST_F(IsolatedRunner, HangingModuleIsKilledOnTimeout) {
  auto m = start(test_module("hang"));
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto before = std::chrono::steady_clock::now();
  auto r = m.value()->execute(ctx_, "", 300ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::timeout);
  EXPECT_NE(r.error().message().find("it was killed"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 8s);  // not the hour it asked for
  EXPECT_TRUE(test::children_of(::getpid()).empty());
}

TEST_F(IsolatedRunner, StdoutNoiseCannotBreakTheHandshakeAndStderrIsForwarded) {
  auto m = start(test_module("chatty"));
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto r = m.value()->execute(ctx_, "ping", 5s);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r.value(), "ping");
  m.value().reset();  // the forwarder drains the child's stderr before it ends
  EXPECT_TRUE(logged("[module.chatty]")) << "no line under the module's logger";
  EXPECT_TRUE(logged("chatty: stray stdout while loading"));
  EXPECT_TRUE(logged("chatty: a line on stderr"));
  EXPECT_TRUE(logged("warning: chatty: a warning through the context"));
}

TEST_F(IsolatedRunner, LoadErrorsInTheChildKeepTheirMeaning) {
  auto abi = start(test_module("wrong_abi"));
  ASSERT_FALSE(abi.ok());
  EXPECT_EQ(abi.error().code(), ErrorCode::abi_mismatch);
  EXPECT_NE(abi.error().message().find("999"), std::string::npos) << abi.error().message();

  auto none = start(test_module("no_descriptor"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::invalid_argument);

  auto unknown = start("builtin:does_not_exist");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::not_found);
}

TEST_F(IsolatedRunner, ModuleErrorsComeBackWithTheirMessage) {
  auto m = start(test_module("throws"));
  ASSERT_TRUE(m.ok());
  auto r = m.value()->execute(ctx_, "", 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::module_failed);
  EXPECT_NE(r.error().message().find("boom from the throws module"), std::string::npos)
      << r.error().message();
}

TEST_F(IsolatedRunner, MissingRunnerIsAClearError) {
  ::setenv("MODHOST_RUNNER", "/nonexistent/modhost-module-runner", 1);
  auto m = start("builtin:hello");
  ::setenv("MODHOST_RUNNER", MODHOST_RUNNER_PATH, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::not_found);
  EXPECT_NE(m.error().message().find("MODHOST_RUNNER"), std::string::npos);
}

TEST_F(IsolatedRunner, RunnerStartedByHandExplainsItself) {
  auto r = test::run_command({MODHOST_RUNNER_PATH, "--module", "builtin:hello", "--socket-dir", "/tmp"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not meant to be run by hand"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

}  // namespace
