// `modhost module exec builtin:chaos` as a user runs it, against a real
// Docker engine. Each test works in its own label scope (MODHOST_SCOPE) and
// asserts, by listing labelled resources with the Docker engine itself, that
// nothing of its own is left.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "support/docker_cli.hpp"

using modhost::test::CommandResult;
using modhost::test::run_command;
using namespace std::chrono_literals;

namespace {

const std::string kModhost = modhost::test::kModhostCli;
const std::string& kDocker = modhost::test::kDockerCli;
const std::string& kBusybox = modhost::test::kBusyboxImage;

using modhost::test::Background;
using modhost::test::read_file;
using modhost::test::spawn;
using modhost::test::wait_exit;

class ChaosDocker : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() { load_images({"modhost-busybox.tar", "modhost-module-chaos.tar"}); }

  void TearDown() override {
    if (!scope_.empty() && background_.pid > 0 && !wait_exit(background_.pid, 0ms)) {
      ::kill(background_.pid, SIGKILL);
      wait_exit(background_.pid, 10s);
    }
    DockerCliTest::TearDown();
  }

  // An enclave with busybox services (`sleep 3600`), each with its labels.
  std::string make_enclave(const std::string& name,
                           const std::vector<std::pair<std::string, std::vector<std::string>>>& services) {
    auto added = mh({"-o", "json", "enclave", "add", "--name", name});
    EXPECT_EQ(added.exit_code, 0) << added.err;
    std::string id(boost::json::parse(added.out).at("id").as_string());
    for (const auto& [service, labels] : services) {
      std::vector<std::string> args = {"service", "add", name, service, kBusybox};
      for (const auto& l : labels) args.insert(args.end(), {"--label", l});
      args.insert(args.end(), {"--", "sleep", "3600"});
      auto r = mh(args);
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    return id;
  }

  std::vector<std::string> chaos_argv(const std::string& enclave, const std::string& params) {
    return {kModhost,        "-o",           "json",  "module",           "exec",
            "builtin:chaos", "--enclave-id", enclave, "--execute-params", params};
  }

  // The report of a successful run.
  boost::json::object chaos(const std::string& enclave, const std::string& params) {
    auto r = run_command(chaos_argv(enclave, params));
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return report_of(r.out);
  }

  static std::vector<std::string> acted_on(const boost::json::object& report) {
    std::vector<std::string> out;
    if (!report.contains("actions")) return out;
    for (const auto& a : report.at("actions").as_array()) {
      EXPECT_TRUE(a.at("ok").as_bool()) << a;
      out.emplace_back(a.at("service").as_string());
    }
    return out;
  }

  // The container state Docker reports: running, paused, exited; "" when gone.
  std::string state(const std::string& enclave_id, const std::string& service) {
    if (modhost::test::native_backend()) {
      auto r = mh({"-o", "json", "service", "inspect", enclave_id, service});
      if (r.exit_code != 0) return "";
      boost::system::error_code ec;
      auto v = boost::json::parse(r.out, ec);
      if (ec || !v.is_object()) return "";
      std::string status(v.at("status").as_string());
      return status == "stopped" ? "exited" : status;  // Docker calls both exited
    }
    auto r =
        run_command({kDocker, "ps", "-a", "--filter", "label=io.modhost.scope=" + scope_, "--filter",
                     "label=io.modhost.enclave=" + enclave_id, "--filter", "label=io.modhost.name=" + service,
                     "--filter", "label=io.modhost.kind=service", "--format", "{{.State}}"});
    std::string s = r.out;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  // Waits until every service is in `want`.
  bool wait_state(const std::string& enclave_id, const std::vector<std::string>& services,
                  const std::string& want, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (const auto& s : services) all = all && state(enclave_id, s) == want;
      if (all) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  Background background_;
};

TEST_F(ChaosDocker, KillsANamedServiceAndADryRunChangesNothing) {
  std::string id = make_enclave("kill", {{"a", {}}, {"b", {}}, {"c", {}}});

  auto dry = chaos(id, R"({"action":"kill","regex":".","dry_run":true})");
  EXPECT_TRUE(dry.at("dryRun").as_bool());
  EXPECT_EQ(acted_on(dry), (std::vector<std::string>{"a", "b", "c"}));
  for (const char* s : {"a", "b", "c"}) EXPECT_EQ(state(id, s), "running") << s;

  auto report = chaos(id, R"({"action":"kill","services":["b"]})");
  EXPECT_EQ(acted_on(report), (std::vector<std::string>{"b"}));
  ASSERT_EQ(report.at("actions").as_array().size(), 1u);
  EXPECT_EQ(report.at("actions").at(0).at("signal").to_number<int>(), 9);
  EXPECT_FALSE(report.at("cancelled").as_bool());
  EXPECT_TRUE(report.at("seed").is_number());
  EXPECT_EQ(state(id, "b"), "exited");
  EXPECT_EQ(state(id, "a"), "running");
  EXPECT_EQ(state(id, "c"), "running");
}

TEST_F(ChaosDocker, TheModuleImageKillsThroughTheEnclaveApi) {
  std::string id = make_enclave("image", {{"a", {}}, {"b", {}}});
  auto r =
      run_command({kModhost, "-o", "json", "module", "exec", "modhost/chaos-module:0.1.0", "--enclave-id", id,
                   "--execute-params", R"({"action":"kill","services":["a"],"seed":7})"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(acted_on(report_of(r.out)), (std::vector<std::string>{"a"}));
  EXPECT_EQ(state(id, "a"), "exited");
  EXPECT_EQ(state(id, "b"), "running");
}

TEST_F(ChaosDocker, SameSeedChoosesTheSameTargetsOnIdenticalEnclaves) {
  std::vector<std::pair<std::string, std::vector<std::string>>> services;
  for (const char* s : {"s1", "s2", "s3", "s4", "s5", "s6"}) services.push_back({s, {}});
  std::string one = make_enclave("seed-one", services);
  std::string two = make_enclave("seed-two", services);
  const std::string params = R"({"action":"kill","regex":"^s","count":2,"seed":123456789})";
  auto first = acted_on(chaos(one, params));
  auto second = acted_on(chaos(two, params));
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first, second);
  for (const auto& s : first) {
    EXPECT_EQ(state(one, s), "exited") << s;
    EXPECT_EQ(state(two, s), "exited") << s;
  }
}

TEST_F(ChaosDocker, PauseLastsPauseSecondsThenTheServiceRunsAgain) {
  std::string id = make_enclave("pause", {{"p1", {}}, {"p2", {}}});
  auto started = std::chrono::steady_clock::now();
  background_ =
      spawn(chaos_argv(id, R"({"action":"pause","services":["p1"],"pause_seconds":1})"), scope_ + "-pause");
  bool seen_paused = false;
  std::optional<int> code;
  while (!(code = wait_exit(background_.pid, 0ms))) {
    if (state(id, "p1") == "paused") seen_paused = true;
    if (std::chrono::steady_clock::now() - started > 60s) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(code) << "chaos did not finish";
  EXPECT_EQ(*code, 0) << read_file(background_.err_path);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1s);
  EXPECT_TRUE(seen_paused) << "p1 was never seen paused";
  EXPECT_EQ(state(id, "p1"), "running");
  EXPECT_EQ(state(id, "p2"), "running");
  auto report = report_of(read_file(background_.out_path));
  EXPECT_EQ(acted_on(report), (std::vector<std::string>{"p1"}));
  ASSERT_EQ(report.at("restored").as_array().size(), 1u);
  EXPECT_EQ(report.at("restored").at(0).at("action").as_string(), "unpause");
  EXPECT_TRUE(report.at("restored").at(0).at("ok").as_bool());
}

TEST_F(ChaosDocker, AProtectedServiceSurvivesARegexThatMatchesIt) {
  std::string id =
      make_enclave("guarded", {{"guard", {"io.modhost.protected=true"}}, {"w1", {}}, {"w2", {}}});
  auto report = chaos(id, R"j({"action":"kill","regex":"^(guard|w)"})j");
  EXPECT_EQ(acted_on(report), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(state(id, "guard"), "running");
  EXPECT_EQ(state(id, "w1"), "exited");
  EXPECT_EQ(state(id, "w2"), "exited");

  // Only the protected one matches: nothing to do, an error, nothing changed.
  auto r = mh({"module", "exec", "builtin:chaos", "--enclave-id", id, "--execute-params",
               R"({"action":"kill","regex":"^guard$"})"});
  expect_error(r, 3, "no service matches the targets: regex '^guard$' (protected: guard)");
  EXPECT_EQ(state(id, "guard"), "running");
}

TEST_F(ChaosDocker, SigtermDuringAPauseRunUnpausesAndExits) {
  std::string id = make_enclave("sigterm", {{"x", {}}, {"y", {}}});
  background_ =
      spawn(chaos_argv(id, R"({"action":"pause","regex":".","pause_seconds":600,"interval_seconds":1,
                                          "duration_seconds":600})"),
            scope_ + "-sigterm");
  ASSERT_TRUE(wait_state(id, {"x", "y"}, "paused", 60s)) << read_file(background_.err_path);
  ASSERT_FALSE(wait_exit(background_.pid, 0ms)) << "chaos ended on its own";
  ASSERT_EQ(::kill(background_.pid, SIGTERM), 0);
  auto code = wait_exit(background_.pid, 30s);
  ASSERT_TRUE(code) << "chaos did not exit after SIGTERM";
  EXPECT_EQ(*code, 0) << read_file(background_.err_path);
  EXPECT_EQ(state(id, "x"), "running");
  EXPECT_EQ(state(id, "y"), "running");
  auto report = report_of(read_file(background_.out_path));
  EXPECT_TRUE(report.at("cancelled").as_bool());
  EXPECT_EQ(report.at("restored").as_array().size(), 2u);
}

TEST_F(ChaosDocker, BadInputIsOneLineAndChangesNothing) {
  std::string id = make_enclave("bad", {{"a", {}}, {"b", {}}});
  struct Case {
    const char* params;
    const char* needle;
  };
  const Case cases[] = {
      {R"([1,2])", "must be a JSON object"},
      {R"({"action":"explode","regex":"."})", "unknown action \"explode\""},
      {R"({"action":"kill","services":["a","nope"]})",
       "unknown service 'nope' in 'services': the enclave has a, b"},
      {R"({"action":"kill","regex":"(unclosed"})", "invalid regex '(unclosed'"},
      {R"({"action":"kill","regex":".","count":0})", "'count' must be an integer >= 1"},
      {R"({"action":"kill","regex":".","percentage":150})", "0 < percentage <= 100"},
      {R"({"action":"pause","regex":".","pause_seconds":-2})", "'pause_seconds' must not be negative"},
      {R"({"action":"kill","regex":".","signal":"SIGNOPE"})", "unknown signal \"SIGNOPE\""},
      {R"({"action":"kill","regex":"^zzz"})", "no service matches the targets: regex '^zzz'"},
      {R"({"action":"kill","regex":".","dryrun":true})",
       "unknown chaos param 'dryrun': known params are action"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.params);
    auto r = mh({"module", "exec", "builtin:chaos", "--enclave-id", id, "--execute-params", c.params});
    expect_error(r, 3, c.needle);
  }
  // Without an enclave.
  expect_error(
      mh({"module", "exec", "builtin:chaos", "--execute-params", R"({"action":"kill","regex":"."})"}), 3,
      "--enclave-id");
  EXPECT_EQ(state(id, "a"), "running");
  EXPECT_EQ(state(id, "b"), "running");
}

}  // namespace
