// A test fixture for driving the `modhost` CLI against a real Docker engine.
// Each test works in its own label scope (MODHOST_SCOPE) and asserts, by
// listing labelled resources with the Docker engine itself, that nothing of
// its own is left.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "support/native_leftovers.hpp"
#include "support/packed_images.hpp"
#include "support/process_util.hpp"

namespace modhost::test {

inline const std::string kDockerCli = "/usr/bin/docker";
inline const std::string kBusyboxImage = "modhost/busybox:1";

inline bool docker_answers() { return run_command({"/usr/bin/docker", "info"}).exit_code == 0; }

// The native backend's state directory of a scope.
inline std::string native_state_dir(const std::string& scope) {
  const char* root = std::getenv("MODHOST_NATIVE_DIR");
  return std::string(root && *root ? root : "/run/modhost/native") + "/" + scope;
}

// Everything of one scope on the native backend, one per line (see
// native_leftovers.hpp).
inline std::string native_labelled(const std::string& scope) {
  std::string out;
  for (const auto& l : native_leftovers_settled(native_state_dir(scope), scope, /*count_state_dir=*/true))
    out += l + "\n";
  return out;
}

// MODHOST_TEST_BACKEND=native runs a suite on the native backend instead.
inline bool native_backend() {
  const char* v = std::getenv("MODHOST_TEST_BACKEND");
  return v != nullptr && std::string(v) == "native";
}

// Containers of one label scope (of one kind, if given), as Docker lists them.
inline std::string scoped_containers(const std::string& scope, const std::string& kind = "") {
  if (native_backend()) return "";  // no containers of Docker's; native_labelled() tells the rest
  std::vector<std::string> args = {"/usr/bin/docker", "ps", "-aq", "--filter",
                                   "label=io.modhost.scope=" + scope};
  if (!kind.empty()) args.insert(args.end(), {"--filter", "label=io.modhost.kind=" + kind});
  return run_command(args).out;
}

// Every container, network and volume of one label scope.
inline std::string labelled(const std::string& scope) {
  if (native_backend()) return native_labelled(scope);
  std::string filter = "label=io.modhost.scope=" + scope;
  return scoped_containers(scope) +
         run_command({"/usr/bin/docker", "network", "ls", "-q", "--filter", filter}).out +
         run_command({"/usr/bin/docker", "volume", "ls", "-q", "--filter", filter}).out;
}

class DockerCliTest : public ::testing::Test {
 protected:
  // Loads image archives the build packed (build/images/NAME) once per suite.
  static void load_images(std::initializer_list<const char*> archives) {
    if (native_backend() ? ::geteuid() != 0 : !docker_answers()) return;
    // Every modhost the suite runs takes the backend from the environment.
    if (native_backend()) ::setenv("MODHOST_BACKEND", "native", 1);
    if (auto failed = load_packed_images(archives)) FAIL() << *failed;
  }

  void SetUp() override {
    if (native_backend()) {
      if (::geteuid() != 0) GTEST_SKIP() << "the native backend needs root";
      ::setenv("MODHOST_BACKEND", "native", 1);
    } else if (!docker_answers()) {
      GTEST_SKIP() << "no Docker engine answers (scripts/start-docker starts one)";
    }
    std::random_device rd;
    scope_ = "test" + std::to_string(rd() % 100000000);
    ::setenv("MODHOST_SCOPE", scope_.c_str(), 1);
    // The same tests through an engine daemon: every command then goes over
    // the engine API (the daemon inherits the scope).
    if (const char* v = std::getenv("MODHOST_TEST_VIA_DAEMON"); v && std::string(v) == "1") {
      engine_dir_ = "/tmp/modhost-test-engine-" + scope_;
      ::setenv("MODHOST_ENGINE_DIR", engine_dir_.c_str(), 1);
      auto r = mh({"engine", "start"});
      ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
      ::setenv("MODHOST_HOST", ("unix://" + engine_dir_ + "/engine.sock").c_str(), 1);
    }
  }

  void TearDown() override {
    if (scope_.empty()) return;
    auto r = mh({"clean", "--all"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(labelled(scope_), "") << "resources left behind in scope " << scope_;
    if (!engine_dir_.empty()) {
      auto stopped = mh({"engine", "stop"});
      EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
      EXPECT_FALSE(std::filesystem::exists(engine_dir_ + "/engine.sock")) << "the engine left its socket";
      std::filesystem::remove_all(engine_dir_);
      ::unsetenv("MODHOST_HOST");
      ::unsetenv("MODHOST_ENGINE_DIR");
    }
    ::unsetenv("MODHOST_SCOPE");
  }

  bool via_daemon() const { return !engine_dir_.empty(); }

  CommandResult mh(std::vector<std::string> args) {
    args.insert(args.begin(), kModhostCli);
    return run_command(args);
  }

  // Runs with --output json, expects success, returns the document.
  boost::json::value mh_json(std::vector<std::string> args) {
    args.insert(args.begin(), {"-o", "json"});
    auto r = mh(args);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    boost::system::error_code ec;
    auto v = boost::json::parse(r.out, ec);
    EXPECT_FALSE(ec) << r.out;
    return v;
  }

  // The result object of a module's run (`-o json module exec`'s "result"),
  // or an empty object and a test failure.
  static boost::json::object report_of(const std::string& out) {
    boost::system::error_code ec;
    auto v = boost::json::parse(out, ec);
    if (ec || !v.is_object() || !v.as_object().contains("result") || !v.at("result").is_object()) {
      ADD_FAILURE() << "no report in: " << out;
      return {};
    }
    return v.at("result").as_object();
  }

  // Runs `modhost -o json module exec MODULE --enclave-id ENCLAVE
  // --execute-params PARAMS`, expects success, returns the module's result.
  boost::json::object module_report(const std::string& module, const std::string& enclave,
                                    const std::string& params) {
    auto r =
        mh({"-o", "json", "module", "exec", module, "--enclave-id", enclave, "--execute-params", params});
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return report_of(r.out);
  }

  // The given exit code, and an error that is one line on stderr,
  // "error: ...", containing `needle`.
  void expect_error(const CommandResult& r, int code, const std::string& needle) {
    EXPECT_EQ(r.exit_code, code) << r.err;
    auto pos = r.err.find("error: ");
    ASSERT_NE(pos, std::string::npos) << r.err;
    std::string line = r.err.substr(pos, r.err.find('\n', pos) - pos);
    EXPECT_NE(line.find(needle), std::string::npos) << line;
  }

  std::string scope_;
  std::string engine_dir_;  // set when the tests go through a daemon
};

}  // namespace modhost::test
