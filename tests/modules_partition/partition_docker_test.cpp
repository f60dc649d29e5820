// `modhost module exec builtin:partition` as a user runs it, against a real
// Docker engine, proven by real traffic between services: TCP connections
// through a partition, ping round trips and loss across a degraded one, and,
// after heal, cancellation and a killed host, no rule, chain or process of
// ours left in any service's namespace. Each test works in its own label
// scope and checks with Docker itself that nothing of its own is left.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "backends/net.hpp"
#include "support/docker_cli.hpp"
#include "support/unix_proxy.hpp"

using modhost::test::Background;
using modhost::test::read_file;
using modhost::test::run_command;
using modhost::test::spawn;
using modhost::test::wait_exit;
using namespace std::chrono_literals;

namespace {

const std::string kModhost = modhost::test::kModhostCli;
const std::string& kDocker = modhost::test::kDockerCli;
const std::string& kBusybox = modhost::test::kBusyboxImage;

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class PartitionDocker : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() { load_images({"modhost-busybox.tar", "modhost-module-partition.tar"}); }

  void TearDown() override {
    if (!scope_.empty() && background_.pid > 0 && !wait_exit(background_.pid, 0ms)) {
      ::kill(background_.pid, SIGKILL);
      wait_exit(background_.pid, 10s);
    }
    // Whatever a test applied, heal leaves no rule of ours in any service.
    if (!enclave_.empty()) {
      mh({"module", "exec", "builtin:partition", "--enclave-id", enclave_, "--execute-params",
          R"({"action":"heal"})"});
      for (const auto& [name, ip] : ips_) EXPECT_EQ(our_rules(name), "") << name;
    }
    DockerCliTest::TearDown();
    EXPECT_EQ(shapers(), 0) << "a packet shaper outlived its enclave";
  }

  // An enclave of busybox services that each serve /tmp/ok over HTTP on 8080;
  // remembers each service's address after checking it lies in the subnet.
  void make_enclave(const std::string& name, const std::vector<std::string>& services) {
    auto added = mh_json({"enclave", "add", "--name", name});
    enclave_ = std::string(added.at("id").as_string());
    subnet_ = std::string(added.at("subnet").as_string());
    for (const auto& s : services) {
      auto r = mh({"service", "add", name, s, kBusybox, "--", "sh", "-c",
                   "echo ok > /tmp/ok && exec httpd -f -p 8080 -h /tmp"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      auto info = mh_json({"service", "inspect", name, s});
      std::string ip(info.at("ip").as_string());
      ASSERT_TRUE(modhost::backend::ip_in_subnet(ip, subnet_))
          << s << " has address '" << ip << "' outside " << subnet_;
      ips_[s] = ip;
    }
  }

  boost::json::object partition(const std::string& params) {
    return module_report("builtin:partition", enclave_, params);
  }

  modhost::test::CommandResult exec(const std::string& service, std::vector<std::string> argv) {
    std::vector<std::string> args = {kModhost, "service", "exec", enclave_, service, "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    return run_command(args);
  }

  // A real HTTP request from one service to another over a new TCP
  // connection, 2 s timeout.
  bool connects(const std::string& from, const std::string& to) {
    const std::string& ip = ips_.at(to);
    EXPECT_TRUE(modhost::backend::ip_in_subnet(ip, subnet_));
    auto r = exec(from, {"sh", "-c", "printf 'GET /ok HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " + ip + " 8080"});
    return r.out.find("200 OK") != std::string::npos && r.out.find("\nok") != std::string::npos;
  }

  // Round-trip times in ms of `count` pings, and how many were answered.
  struct Pings {
    std::vector<double> rtt_ms;
    int sent = 0;
  };
  Pings ping(const std::string& from, const std::string& to, int count, const std::string& interval) {
    const std::string& ip = ips_.at(to);
    EXPECT_TRUE(modhost::backend::ip_in_subnet(ip, subnet_));
    auto r = exec(from, {"ping", "-c", std::to_string(count), "-i", interval, "-W", "2", ip});
    Pings p;
    p.sent = count;
    static const std::regex time_re("time=([0-9.]+) ms");
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), time_re), end; it != end; ++it) {
      p.rtt_ms.push_back(std::stod((*it)[1]));
    }
    return p;
  }

  // The pid of a service's main process, as Docker reports it.
  std::string pid_of(const std::string& service) {
    if (modhost::test::native_backend()) {
      // The native backend's own record of the service's PID 1.
      auto run = read_file(modhost::test::native_state_dir(scope_) + "/enclaves/" + enclave_ + "/services/" +
                           service + "/run.json");
      boost::system::error_code ec;
      auto v = boost::json::parse(run, ec);
      if (ec || !v.is_object() || !v.as_object().contains("pid")) return "";
      return std::to_string(v.at("pid").to_number<long>());
    }
    auto r =
        run_command({kDocker, "ps", "-q", "--filter", "label=io.modhost.scope=" + scope_, "--filter",
                     "label=io.modhost.enclave=" + enclave_, "--filter", "label=io.modhost.name=" + service});
    std::string id = r.out.substr(0, r.out.find('\n'));
    if (id.empty()) return "";
    auto pid = run_command({kDocker, "inspect", "-f", "{{.State.Pid}}", id}).out;
    return pid.substr(0, pid.find('\n'));
  }

  // Every line of ours in the service's netfilter tables, read by the kernel's
  // own tool inside the namespace.
  std::string our_rules(const std::string& service) {
    std::string pid = pid_of(service);
    if (pid.empty() || pid == "0") return "";
    auto r = run_command({"/usr/bin/nsenter", "-t", pid, "-n", "iptables-save"});
    std::string ours;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("MODHOST") != std::string::npos || line.find("NFQUEUE") != std::string::npos) {
        ours += line + "\n";
      }
    }
    return ours;
  }

  // modhost-netshaper processes of any enclave this test made.
  int shapers() {
    auto r = run_command({"/usr/bin/pgrep", "-f", "modhost-netshaper --config /run/modhost/net/" + enclave_});
    return enclave_.empty() ? 0 : static_cast<int>(std::count(r.out.begin(), r.out.end(), '\n'));
  }

  std::string enclave_;
  std::string subnet_;
  std::map<std::string, std::string> ips_;
  Background background_;
};

TEST_F(PartitionDocker, BlockedStopsTrafficBetweenPartitionsNotWithinAndHealRestoresIt) {
  make_enclave("blocked", {"a1", "a2", "b1"});
  ASSERT_TRUE(connects("a1", "b1"));

  auto report = partition(R"({"partitions":{"a":["a1","a2"],"b":["b1"]},
                              "connections":[{"between":["a","b"],"blocked":true}]})");
  ASSERT_EQ(report.at("events").at(0).at("event"), "applied");
  EXPECT_TRUE(connects("a1", "a2")) << "within a partition nothing is shaped";
  EXPECT_TRUE(connects("a2", "a1"));
  EXPECT_FALSE(connects("a1", "b1"));
  EXPECT_FALSE(connects("b1", "a2"));
  EXPECT_NE(our_rules("a1").find("-j DROP"), std::string::npos) << our_rules("a1");

  auto healed = partition(R"({"action":"heal"})");
  EXPECT_EQ(healed.at("events").at(0).at("event"), "healed");
  EXPECT_TRUE(connects("a1", "b1"));
  EXPECT_TRUE(connects("b1", "a2"));
  for (const char* s : {"a1", "a2", "b1"}) EXPECT_EQ(our_rules(s), "") << s;
}

// The engine remembers each service's namespace by its pid (and the pid's
// start time) between applies: a restarted service has a new namespace, and
// the next apply must find it rather than the old one.
TEST_F(PartitionDocker, AServiceRestartedBetweenAppliesIsPartitionedAgain) {
  make_enclave("restarted", {"a1", "b1"});
  const std::string blocked = R"({"partitions":{"a":["a1"],"b":["b1"]},
                                  "connections":[{"between":["a","b"],"blocked":true}]})";
  ASSERT_EQ(partition(blocked).at("events").at(0).at("event"), "applied");
  ASSERT_FALSE(connects("a1", "b1"));
  const std::string old_pid = pid_of("b1");
  ASSERT_EQ(mh({"service", "restart", enclave_, "b1"}).exit_code, 0);
  const std::string new_pid = pid_of("b1");
  ASSERT_NE(new_pid, old_pid);
  auto info = mh_json({"service", "inspect", enclave_, "b1"});
  ips_["b1"] = std::string(info.at("ip").as_string());
  ASSERT_TRUE(modhost::backend::ip_in_subnet(ips_["b1"], subnet_)) << ips_["b1"];
  EXPECT_EQ(our_rules("b1"), "") << "a fresh namespace holds nothing of ours";

  ASSERT_EQ(partition(blocked).at("events").at(0).at("event"), "applied");
  EXPECT_NE(our_rules("b1").find("-j DROP"), std::string::npos) << our_rules("b1");
  EXPECT_FALSE(connects("b1", "a1"));
  EXPECT_FALSE(connects("a1", "b1"));
}

TEST_F(PartitionDocker, DelayRaisesTheRoundTripAndLossDropsAboutThatShare) {
  make_enclave("degraded", {"a1", "b1"});
  const double base = median(ping("a1", "b1", 10, "0.2").rtt_ms);
  ASSERT_GT(base, 0) << "no ping answered before any partition";

  // 100 ms each way: a round trip grows by about 200 ms.
  partition(
      R"({"partitions":{"a":["a1"]},"connections":[{"between":["a","others"],"delay_ms":100,"jitter_ms":5}]})");
  const double delayed = median(ping("a1", "b1", 10, "0.2").rtt_ms);
  EXPECT_GT(delayed - base, 150) << "base " << base << " ms, delayed " << delayed << " ms";
  EXPECT_LT(delayed - base, 400) << "base " << base << " ms, delayed " << delayed << " ms";
  EXPECT_TRUE(connects("a1", "b1")) << "a delayed connection still carries traffic";

  // 30% each way: a ping and its answer both cross, so 1 - 0.7^2 = 51% go.
  partition(R"({"partitions":{"a":["a1"]},"connections":[{"between":["a","others"],"loss":30}]})");
  auto lossy = ping("a1", "b1", 200, "0.02");
  const double lost = 1.0 - static_cast<double>(lossy.rtt_ms.size()) / lossy.sent;
  EXPECT_NEAR(lost, 0.51, 0.12) << lossy.rtt_ms.size() << " of " << lossy.sent << " answered";
  EXPECT_EQ(shapers(), 1);

  partition(R"({"action":"heal"})");
  const double after = median(ping("a1", "b1", 10, "0.2").rtt_ms);
  EXPECT_GT(after, 0);
  EXPECT_LT(after, base + 20) << "the round trip is back to its baseline";
}

TEST_F(PartitionDocker, DurationHealsByItselfAndCancellationHealsEarly) {
  make_enclave("duration", {"a1", "b1"});
  auto report = partition(R"({"partitions":{"a":["a1"]},"default":{"blocked":true},"duration_seconds":1})");
  ASSERT_EQ(report.at("events").as_array().size(), 2u);
  EXPECT_EQ(report.at("events").at(1).at("reason"), "duration");
  EXPECT_TRUE(connects("a1", "b1"));
  EXPECT_EQ(our_rules("a1"), "");

  background_ = spawn(
      {kModhost, "-o", "json", "module", "exec", "builtin:partition", "--enclave-id", enclave_,
       "--execute-params", R"({"partitions":{"a":["a1"]},"default":{"delay_ms":50},"duration_seconds":600})"},
      scope_ + "-cancel");
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (our_rules("b1").empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(our_rules("b1"), "") << read_file(background_.err_path);
  EXPECT_EQ(shapers(), 1);
  ::kill(background_.pid, SIGINT);
  auto code = wait_exit(background_.pid, 30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << read_file(background_.err_path);
  auto out = boost::json::parse(read_file(background_.out_path));
  EXPECT_TRUE(out.at("result").at("cancelled").as_bool());
  EXPECT_EQ(out.at("result").at("events").at(1).at("reason"), "cancelled");
  EXPECT_EQ(our_rules("a1"), "");
  EXPECT_EQ(our_rules("b1"), "");
  EXPECT_EQ(shapers(), 0);
}

TEST_F(PartitionDocker, AfterTheHostIsKilledCleanRemovesWhatTheRunHeld) {
  make_enclave("killed", {"a1", "b1"});
  background_ =
      spawn({kModhost, "module", "exec", "builtin:partition", "--enclave-id", enclave_, "--execute-params",
             R"({"partitions":{"a":["a1"]},"default":{"delay_ms":20},"duration_seconds":600})"},
            scope_ + "-killed");
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (our_rules("a1").empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(our_rules("a1"), "") << read_file(background_.err_path);
  ::kill(background_.pid, SIGKILL);
  wait_exit(background_.pid, 10s);
  EXPECT_NE(our_rules("a1"), "") << "nothing healed a SIGKILLed run";
  EXPECT_EQ(shapers(), 1) << "the shaper outlives the command that started it";

  auto clean = mh({"clean"});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_NE(clean.out.find("partition of enclave killed"), std::string::npos) << clean.out;
  EXPECT_EQ(our_rules("a1"), "");
  EXPECT_EQ(our_rules("b1"), "");
  EXPECT_EQ(shapers(), 0);
  EXPECT_TRUE(connects("a1", "b1"));
}

TEST_F(PartitionDocker, BadInputChangesNothing) {
  make_enclave("bad", {"a1", "b1"});
  auto run = [&](const std::string& params) {
    return mh({"module", "exec", "builtin:partition", "--enclave-id", enclave_, "--execute-params", params});
  };
  expect_error(run(R"({"partitions":{"a":["a1","ghost"]},"default":{"blocked":true}})"), 3,
               "unknown service 'ghost'");
  expect_error(run(R"({"partitions":{"a":["a1"],"b":["a1"]},"default":{"blocked":true}})"), 3,
               "in two partitions");
  expect_error(run(R"({"partitions":{"a":["a1"]},"default":{"loss":250}})"), 3, "outside 0..100");
  expect_error(run(R"({"partitions":{"a":["a1"]}})"), 3, "nothing to shape");
  expect_error(run(R"("split")"), 3, "JSON object");
  for (const char* s : {"a1", "b1"}) EXPECT_EQ(our_rules(s), "") << s;
  EXPECT_TRUE(connects("a1", "b1"));
}

TEST_F(PartitionDocker, AContainerizedModuleRepartitionsThroughTheEnclaveApi) {
  make_enclave("api", {"a1", "b1"});
  auto r = mh({"-o", "json", "module", "exec", "modhost/partition-module:0.1.0", "--enclave-id", enclave_,
               "--execute-params", R"({"partitions":{"a":["a1"]},"default":{"blocked":true}})"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_FALSE(connects("a1", "b1"));
  EXPECT_NE(our_rules("b1"), "");
}

TEST_F(PartitionDocker, TheEnclaveTimelineShowsStartsChaosAndPartitionsInOrder) {
  make_enclave("timeline", {"a1", "b1"});
  partition(R"({"partitions":{"a":["a1"]},"default":{"blocked":true}})");
  module_report("builtin:chaos", enclave_, R"({"action":"kill","services":["b1"]})");
  partition(R"({"action":"heal"})");

  auto events = mh_json({"enclave", "events", enclave_});
  std::vector<std::string> seen;
  for (const auto& e : events.as_array()) {
    std::string line =
        std::string(e.at("subject").as_string()) + " " + std::string(e.at("action").as_string());
    if (e.as_object().contains("attributes") && e.at("attributes").as_object().contains("signal")) {
      line += " " + std::string(e.at("attributes").at("signal").as_string());
    }
    seen.push_back(line);
  }
  auto position = [&](const std::string& what) {
    auto it = std::find(seen.begin(), seen.end(), what);
    EXPECT_NE(it, seen.end()) << "no '" << what << "' in the timeline";
    return it - seen.begin();
  };
  EXPECT_LT(position("a1 start"), position("network partition applied"));
  EXPECT_LT(position("b1 start"), position("network partition applied"));
  EXPECT_LT(position("network partition applied"), position("b1 kill 9"));
  EXPECT_LT(position("b1 kill 9"), position("b1 die"));
  EXPECT_LT(position("b1 die"), position("network healed"));
  for (const auto& e : events.as_array()) EXPECT_EQ(e.at("time").as_string().size(), 27u) << e;
}

// An engine modhost cannot enter (reached over TCP): the same partition goes
// through helper containers that share each service's namespace.
TEST_F(PartitionDocker, AnEngineElsewhereIsShapedThroughHelperContainers) {
  if (modhost::test::native_backend()) {
    GTEST_SKIP() << "a container engine on another host is a Docker setup; native services always run here";
  }
  modhost::test::UnixSocketProxy proxy("/var/run/docker.sock");
  ASSERT_NE(proxy.port(), 0);
  ::setenv("DOCKER_HOST", ("tcp://127.0.0.1:" + std::to_string(proxy.port())).c_str(), 1);
  struct Unset {
    ~Unset() { ::unsetenv("DOCKER_HOST"); }
  } unset;

  make_enclave("remote", {"a1", "b1", "c1"});
  const double base = median(ping("a1", "c1", 5, "0.2").rtt_ms);
  ASSERT_GT(base, 0);
  partition(R"({"partitions":{"a":["a1"],"b":["b1"]},
                "connections":[{"between":["a","b"],"blocked":true},{"between":["a","others"],"delay_ms":50}]})");
  const std::string helpers = modhost::test::scoped_containers(scope_, "helper");
  EXPECT_EQ(std::count(helpers.begin(), helpers.end(), '\n'), 3) << "one helper per service: " << helpers;
  EXPECT_FALSE(connects("a1", "b1"));
  EXPECT_TRUE(connects("b1", "c1"));
  const double delayed = median(ping("a1", "c1", 5, "0.2").rtt_ms);
  EXPECT_GT(delayed - base, 75) << "base " << base << " ms, delayed " << delayed << " ms";

  partition(R"({"action":"heal"})");
  EXPECT_TRUE(connects("a1", "b1"));
  for (const char* s : {"a1", "b1", "c1"}) EXPECT_EQ(our_rules(s), "") << s;
  EXPECT_EQ(modhost::test::scoped_containers(scope_, "helper"), "") << "heal removes the helpers";
}

}  // namespace
