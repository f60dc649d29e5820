// The `modhost` command as a user runs it: output, exit codes, bad input.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/process_util.hpp"

using modhost::test::run_command;
using namespace std::chrono_literals;

namespace {

const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";
std::string test_module(const std::string& name) {
  return std::string(MODHOST_TEST_MODULE_DIR) + "/" + name + ".so";
}

modhost::test::CommandResult modhost_cmd(std::vector<std::string> args) {
  args.insert(args.begin(), kModhost);
  return run_command(args);
}

// Every failure is one line on stderr starting with "error: ".
void expect_one_line_error(const modhost::test::CommandResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  auto pos = r.err.find("error: ");
  ASSERT_NE(pos, std::string::npos) << r.err;
  std::string line = r.err.substr(pos);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "error spans several lines: " << line;
  EXPECT_NE(line.find(needle), std::string::npos) << line;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(Cli, ExecBuiltinHelloPrintsTheResult) {
  auto r = modhost_cmd({"module", "exec", "builtin:hello", "--execute-params", R"({"who":"you"})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto v = boost::json::parse(r.out);
  EXPECT_EQ(v.at("params").at("who").as_string(), "you");
  EXPECT_NE(r.err.find("Executing module 'hello'"), std::string::npos);
}

TEST(Cli, JsonOutputIsOneDocument) {
  auto r = modhost_cmd({"module", "exec", "builtin:hello", "--execute-params", "[1,2]", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto v = boost::json::parse(r.out);
  EXPECT_EQ(v.at("module").at("name").as_string(), "hello");
  EXPECT_EQ(v.at("result").at("params").as_array().size(), 2u);
  EXPECT_TRUE(v.at("durationMs").is_number());
  EXPECT_TRUE(r.err.empty()) << r.err;  // no progress lines in JSON mode
}

TEST(Cli, JsonErrorsCarryCodeAndExitCode) {
  auto r = modhost_cmd({"-o", "json", "module", "exec", "builtin:nope"});
  EXPECT_EQ(r.exit_code, 4);
  auto v = boost::json::parse(r.out);
  EXPECT_EQ(v.at("error").at("code").as_string(), "not_found");
  EXPECT_EQ(v.at("error").at("exitCode").as_int64(), 4);
}

TEST(Cli, ExecPluginPathAndIsolated) {
  std::string so = std::string(MODHOST_PLUGIN_DIR) + "/hello.so";
  auto direct = modhost_cmd({"module", "exec", so, "--execute-params", "{}"});
  EXPECT_EQ(direct.exit_code, 0) << direct.err;
  auto isolated = modhost_cmd({"module", "exec", so, "--isolate", "--execute-params", "{}"});
  EXPECT_EQ(isolated.exit_code, 0) << isolated.err;
  EXPECT_EQ(direct.out, isolated.out);
}

TEST(Cli, BadInputGivesOneLineErrorsAndDistinctExitCodes) {
  modhost::test::let_children_die_from_signals();
  expect_one_line_error(modhost_cmd({"module", "exec", "/nonexistent/m.so"}), 4, "not found");
  std::string text = ::testing::TempDir() + "/plain.so";
  std::ofstream(text) << "not elf";
  expect_one_line_error(modhost_cmd({"module", "exec", text}), 3, "not a shared library");
  expect_one_line_error(modhost_cmd({"module", "exec", test_module("no_descriptor")}), 3,
                        "exports no 'modhost_module_descriptor'");
  expect_one_line_error(modhost_cmd({"module", "exec", test_module("wrong_abi")}), 8, "ABI version 999");
  expect_one_line_error(modhost_cmd({"module", "exec", "builtin:hello", "--execute-params", "{bad"}), 3,
                        "malformed JSON");
  expect_one_line_error(modhost_cmd({"module", "exec", test_module("throws")}), 9,
                        "boom from the throws module");
  expect_one_line_error(modhost_cmd({"module", "exec", test_module("segfault"), "--isolate"}), 10,
                        "crashed (signal 11");
  expect_one_line_error(
      modhost_cmd({"module", "exec", test_module("hang"), "--isolate", "--timeout", "300ms"}), 7,
      "it was killed");
  expect_one_line_error(modhost_cmd({"module", "exec", test_module("hang"), "--timeout", "200ms"}), 7,
                        "did not finish within 200 ms");
  expect_one_line_error(modhost_cmd({"module", "exec", "builtin:nope"}), 4, "unknown built-in module 'nope'");
  expect_one_line_error(modhost_cmd({"module", "exec", "builtin:hello", "--timeout", "soon"}), 3,
                        "invalid duration");
  std::filesystem::remove(text);
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(modhost_cmd({}).exit_code, 2);
  EXPECT_EQ(modhost_cmd({"module", "exec"}).exit_code, 2);
  EXPECT_EQ(modhost_cmd({"module", "exec", "builtin:hello", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(modhost_cmd({"--output", "yaml", "version"}).exit_code, 2);
}

TEST(Cli, HelpIsEverywhere) {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"},
                                                         {"module", "--help"},
                                                         {"module", "exec", "--help"},
                                                         {"module", "ls", "--help"},
                                                         {"version", "--help"}}) {
    auto r = modhost_cmd(args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << args.back();
  }
}

TEST(Cli, ModuleLsListsBuiltinsAndPlugins) {
  auto r = modhost_cmd({"module", "ls", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto v = boost::json::parse(r.out);
  bool builtin = false, plugin = false;
  for (const auto& m : v.at("modules").as_array()) {
    if (m.at("name").as_string() == "hello" && m.at("source").as_string() == "builtin") builtin = true;
    if (m.at("name").as_string() == "hello" && m.at("source").as_string() != "builtin") plugin = true;
  }
  EXPECT_TRUE(builtin);
  EXPECT_TRUE(plugin);
}

TEST(Cli, VersionPrintsAbi) {
  auto r = modhost_cmd({"version", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(boost::json::parse(r.out).at("moduleAbiVersion").as_int64(), 1);
  // --version and -V print the same line as `modhost version`, with no subcommand.
  auto text = modhost_cmd({"version"});
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_TRUE(text.out.starts_with("modhost ")) << text.out;
  for (const char* flag : {"--version", "-V"}) {
    auto v = modhost_cmd({flag});
    EXPECT_EQ(v.exit_code, 0) << flag << ": " << v.err;
    EXPECT_EQ(v.out, text.out) << flag;
  }
}

// The runner dies with its host, and the next host removes what it left.
TEST(Cli, RunnerDiesWhenTheHostIsKilled) {
  pid_t host = ::fork();
  if (host == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    std::string m = test_module("hang");
    ::execl(kModhost.c_str(), kModhost.c_str(), "module", "exec", m.c_str(), "--isolate", nullptr);
    ::_exit(127);
  }
  std::vector<pid_t> runners;
  for (int i = 0; i < 500 && runners.empty(); ++i) {
    std::this_thread::sleep_for(10ms);
    runners = modhost::test::children_of(host);
  }
  ASSERT_EQ(runners.size(), 1u) << "the host never started its runner";
  std::this_thread::sleep_for(200ms);  // let it get into execute
  ::kill(host, SIGKILL);
  ::waitpid(host, nullptr, 0);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = !modhost::test::process_alive(runners[0]);
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "runner " << runners[0] << " outlived its host";

  // The killed host's runtime directory is swept by the next isolated run.
  auto next = modhost_cmd({"module", "exec", "builtin:hello", "--isolate"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_TRUE(modhost::test::runner_dirs(host).empty())
      << "the killed host's runner directory was left behind";
}

}  // namespace
