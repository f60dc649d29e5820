// Native plugins loaded in this process with Boost.DLL: validation before
// any module code runs, ABI checks, errors instead of crashes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/module_manager.hpp"
#include "engine/native_module.hpp"
#include "engine/null_context.hpp"

using namespace modhost;
using namespace modhost::engine;

namespace {

std::string test_module(const std::string& name) {
  return std::string(MODHOST_TEST_MODULE_DIR) + "/" + name + ".so";
}
std::string plugin(const std::string& name) { return std::string(MODHOST_PLUGIN_DIR) + "/" + name + ".so"; }

class PluginHost : public ::testing::Test {
 protected:
  NullEnclaveContext ctx_{"test"};
};

TEST_F(PluginHost, LoadsAndExecutesHello) {
  auto m = load_plugin(plugin("hello"), "");
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m.value()->metadata().name, "hello");
  EXPECT_EQ(m.value()->metadata().abi_version, kAbiVersion);
  auto r = m.value()->execute(ctx_, R"({"x":42})", std::nullopt);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_NE(r.value().find(R"("params":{"x":42})"), std::string::npos) << r.value();
}

TEST_F(PluginHost, InspectsWithoutCreating) {
  auto meta = inspect_plugin(plugin("hello"));
  ASSERT_TRUE(meta.ok()) << meta.error().message();
  EXPECT_EQ(meta->version, "1.0.0");
  EXPECT_EQ(meta->params_format, ParamsFormat::json);
}

TEST_F(PluginHost, MissingFileIsNotFound) {
  auto m = load_plugin("/nonexistent/dir/m.so", "");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::not_found);
  EXPECT_NE(m.error().message().find("not found"), std::string::npos);
}

TEST_F(PluginHost, FileThatIsNotASharedLibraryIsRefused) {
  std::string path = ::testing::TempDir() + "/not_a_library.so";
  std::ofstream(path) << "this is text, not ELF";
  auto m = load_plugin(path, "");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(m.error().message().find("is not a shared library"), std::string::npos) << m.error().message();
  std::filesystem::remove(path);
}

TEST_F(PluginHost, LibraryWithoutDescriptorIsRefused) {
  auto m = load_plugin(test_module("no_descriptor"), "");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(m.error().message().find("exports no 'modhost_module_descriptor'"), std::string::npos)
      << m.error().message();
}

TEST_F(PluginHost, AbiMismatchNamesBothVersions) {
  auto m = load_plugin(test_module("wrong_abi"), "");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::abi_mismatch);
  EXPECT_NE(m.error().message().find("ABI version 999"), std::string::npos) << m.error().message();
  EXPECT_NE(m.error().message().find("ABI version " + std::to_string(kAbiVersion)), std::string::npos);
}

TEST_F(PluginHost, ThrowingModuleBecomesAnError) {
  auto m = load_plugin(test_module("throws"), "");
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto r = m.value()->execute(ctx_, "", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::module_failed);
  EXPECT_NE(r.error().message().find("boom from the throws module"), std::string::npos);
  // The host goes on: the same module can be called again.
  EXPECT_FALSE(m.value()->execute(ctx_, "", std::nullopt).ok());
}

TEST_F(PluginHost, ModuleErrorsAndLoadErrorsArrive) {
  auto refused = load_plugin(test_module("fails"), "fail");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("load refused"), std::string::npos);
  auto m = load_plugin(test_module("fails"), "");
  ASSERT_TRUE(m.ok());
  auto r = m.value()->execute(ctx_, "", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "the fails module always fails");
}

TEST_F(PluginHost, MalformedJsonNeverReachesTheModule) {
  auto m = load_plugin(plugin("hello"), "");
  ASSERT_TRUE(m.ok());
  auto r = m.value()->execute(ctx_, "{oops", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  auto bad_load = load_plugin(plugin("hello"), "[1,");
  ASSERT_FALSE(bad_load.ok());
  EXPECT_NE(bad_load.error().message().find("load params"), std::string::npos);
}

TEST_F(PluginHost, InProcessTimeoutIsReported) {
  auto m = load_plugin(test_module("hang"), "");
  ASSERT_TRUE(m.ok());
  auto r = m.value()->execute(ctx_, "400", std::chrono::milliseconds(50));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::timeout);
  // Within the budget the same call succeeds.
  auto ok = m.value()->execute(ctx_, "1", std::chrono::milliseconds(5000));
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok.value(), "woke up");
  // The abandoned call keeps its own reference to the module and library;
  // destroying the instance now must not unload code still running.
  m.value().reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
}

TEST_F(PluginHost, ModuleKeepsItsLibraryLoaded) {
  std::string path = plugin("hello");
  auto first = load_plugin(path, "");
  ASSERT_TRUE(first.ok());
  {
    auto second = load_plugin(path, "");
    ASSERT_TRUE(second.ok());
  }  // second's library reference is gone; first's must keep the code mapped
  auto r = first.value()->execute(ctx_, "{}", std::nullopt);
  ASSERT_TRUE(r.ok()) << r.error().message();
}

TEST(ModuleManager, ListsBuiltinsAndSearchPath) {
  ModuleRegistry empty;
  ModuleManager manager(empty);
  auto listing = manager.list({MODHOST_TEST_MODULE_DIR});
  bool saw_throws = false, saw_bad_abi = false, saw_no_descriptor = false;
  for (const auto& l : listing) {
    if (l.metadata.name == "throws" && l.error.empty()) saw_throws = true;
    if (l.metadata.name == "wrong_abi" && l.error.find("999") != std::string::npos) saw_bad_abi = true;
    if (l.metadata.name == "no_descriptor" && !l.error.empty()) saw_no_descriptor = true;
  }
  EXPECT_TRUE(saw_throws);
  EXPECT_TRUE(saw_bad_abi);
  EXPECT_TRUE(saw_no_descriptor);
}

}  // namespace
