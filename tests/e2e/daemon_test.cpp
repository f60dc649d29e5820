// The engine daemon against a real Docker engine: its lifecycle, one engine
// per directory, a stale socket, a daemon killed mid-request, a daemon that
// cannot start, remote access with TLS and a token, and the CLI giving the
// same output embedded and through the daemon.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "engine_api.grpc.pb.h"
#include "support/docker_cli.hpp"
#include "support/process_util.hpp"

namespace modhost::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kBusybox = "modhost/busybox:1";

class Daemon : public DockerCliTest {
 protected:
  static void SetUpTestSuite() { load_images({"modhost-busybox.tar", "modhost-module-hello.tar"}); }

  void SetUp() override {
    DockerCliTest::SetUp();
    if (IsSkipped()) return;
    dir_ = "/tmp/modhost-daemon-test-" + scope_;
    ::setenv("MODHOST_ENGINE_DIR", dir_.c_str(), 1);
    address_ = "unix://" + dir_ + "/engine.sock";
  }

  void TearDown() override {
    if (!dir_.empty()) {
      if (auto pid = engine_pid(); pid > 0) {
        ::kill(pid, SIGKILL);
        for (int i = 0; i < 100 && process_alive(pid); ++i) std::this_thread::sleep_for(20ms);
      }
    }
    ::unsetenv("MODHOST_HOST");
    DockerCliTest::TearDown();  // cleans the scope with an engine in the test's process
    if (!dir_.empty()) {
      EXPECT_EQ(engine_processes(), 0) << "an engine process outlived the test";
      fs::remove_all(dir_);
      ::unsetenv("MODHOST_ENGINE_DIR");
    }
  }

  pid_t engine_pid() const {
    pid_t pid = 0;
    std::ifstream(dir_ + "/engine.pid") >> pid;
    return pid;
  }

  // Engine processes serving this test's directory.
  int engine_processes() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string pid = e.path().filename();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string environ = read_file("/proc/" + pid + "/environ");
      std::string cmdline = read_file("/proc/" + pid + "/cmdline");
      if (cmdline.find("engine") != std::string::npos && cmdline.find("run") != std::string::npos &&
          environ.find("MODHOST_ENGINE_DIR=" + dir_ + '\0') != std::string::npos &&
          process_alive(std::stoi(pid)))
        ++n;
    }
    return n;
  }

  CommandResult via_daemon(std::vector<std::string> args) {
    args.insert(args.begin(), {"-H", address_});
    return mh(args);
  }

  std::string dir_;
  std::string address_;
};

TEST_F(Daemon, StartStatusStopAndTheFilesItKeepsPrivate) {
  auto status = mh({"engine", "status"});
  expect_error(status, 6, "not running");

  auto started = mh_json({"engine", "start"});
  ASSERT_TRUE(started.is_object());
  EXPECT_EQ(started.at("listen").as_array().at(0).as_string(), address_);
  EXPECT_EQ(started.at("pid").as_int64(), engine_pid());

  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/engine.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_FALSE(fs::exists(dir_ + "/token")) << "no token without a TCP listener";

  auto s = mh_json({"engine", "status"});
  EXPECT_TRUE(s.at("running").as_bool());
  EXPECT_EQ(s.at("backend").as_string(), "docker");
  EXPECT_EQ(s.at("pid").as_int64(), engine_pid());

  // The CLI's commands go through it.
  auto added = via_daemon({"enclave", "add", "--name", "through"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_NE(read_file(dir_ + "/engine.log").find("created enclave 'through'"), std::string::npos)
      << "the daemon's log does not show the enclave it made";

  auto stopped = mh_json({"engine", "stop"});
  EXPECT_EQ(stopped.at("stopped").as_int64(), s.at("pid").as_int64());
  EXPECT_FALSE(fs::exists(dir_ + "/engine.sock"));
  EXPECT_FALSE(fs::exists(dir_ + "/engine.pid"));
  EXPECT_EQ(engine_processes(), 0);
  expect_error(mh({"engine", "stop"}), 4, "no engine runs");
  expect_error(mh({"engine", "status"}), 6, "not running");
}

TEST_F(Daemon, RestartGivesANewProcessThatSeesTheSameEnclaves) {
  ASSERT_EQ(mh({"engine", "start"}).exit_code, 0);
  pid_t first = engine_pid();
  ASSERT_EQ(via_daemon({"enclave", "add", "--name", "kept"}).exit_code, 0);
  auto r = mh({"engine", "restart"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(engine_pid(), first);
  EXPECT_FALSE(process_alive(first));
  EXPECT_NE(via_daemon({"enclave", "ls"}).out.find("kept"), std::string::npos);
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
}

TEST_F(Daemon, TwoStartedAtOnceGiveOneEngine) {
  auto a = spawn({kModhostCli, "engine", "start"}, "a-" + scope_);
  auto b = spawn({kModhostCli, "engine", "start"}, "b-" + scope_);
  auto ea = wait_exit(a.pid, 30s);
  auto eb = wait_exit(b.pid, 30s);
  ASSERT_TRUE(ea && eb);
  // One started it; the other refused, or found it up and refused.
  EXPECT_EQ((*ea == 0) + (*eb == 0), 1) << read_file(a.err_path) << read_file(b.err_path);
  EXPECT_EQ(std::max(*ea, *eb), 5);
  const std::string& err = *ea == 0 ? b.err_path : a.err_path;
  EXPECT_NE(read_file(err).find("already runs"), std::string::npos) << read_file(err);
  EXPECT_EQ(engine_processes(), 1);

  // A foreground one refuses too, and leaves the running one alone.
  auto fg = mh({"engine", "run"});
  expect_error(fg, 5, "already runs");
  EXPECT_EQ(mh({"engine", "status"}).exit_code, 0);
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
  fs::remove(a.out_path);
  fs::remove(a.err_path);
  fs::remove(b.out_path);
  fs::remove(b.err_path);
}

TEST_F(Daemon, AStaleSocketIsDetectedAndReplaced) {
  ASSERT_EQ(mh({"engine", "start"}).exit_code, 0);
  ASSERT_EQ(via_daemon({"enclave", "add", "--name", "survivor"}).exit_code, 0);
  pid_t pid = engine_pid();
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 200 && process_alive(pid); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(fs::exists(dir_ + "/engine.sock")) << "a killed engine leaves its socket";

  expect_error(mh({"engine", "status"}), 6, "stale socket");
  expect_error(via_daemon({"enclave", "ls"}), 6, "no modhost engine answers at " + address_);
  // Without -H (and no scope to keep to), the CLI falls back to an engine of its own.
  {
    ::unsetenv("MODHOST_SCOPE");
    auto r = mh({"-o", "json", "enclave", "ls"});
    ::setenv("MODHOST_SCOPE", scope_.c_str(), 1);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }

  auto started = mh({"engine", "start"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_NE(read_file(dir_ + "/engine.log").find("replacing the stale socket"), std::string::npos);
  EXPECT_NE(via_daemon({"enclave", "ls"}).out.find("survivor"), std::string::npos)
      << "the restarted engine does not see the enclave made before the crash";
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
}

TEST_F(Daemon, KilledMidRequestGivesTheClientAClearErrorAndARestartRecovers) {
  ASSERT_EQ(mh({"engine", "start"}).exit_code, 0);
  ASSERT_EQ(via_daemon({"enclave", "add", "--name", "mid"}).exit_code, 0);
  // A request that takes long: a readiness wait that never succeeds.
  auto slow =
      spawn({kModhostCli, "-H", address_, "service", "add", "mid", "slow", kBusybox, "--wait", "exec:false",
             "--wait-retries", "600", "--wait-interval", "100ms", "--", "sleep", "3600"},
            "slow-" + scope_);
  // Once the service exists, the engine is inside the request.
  bool inside = false;
  for (int i = 0; i < 300 && !inside; ++i) {
    inside = !scoped_containers(scope_, "service").empty();
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(inside) << read_file(slow.err_path);
  std::this_thread::sleep_for(300ms);
  ::kill(engine_pid(), SIGKILL);
  auto code = wait_exit(slow.pid, 20s);
  ASSERT_TRUE(code.has_value()) << "the client hangs after its engine died";
  EXPECT_EQ(*code, 6);
  std::string err = read_file(slow.err_path);
  auto line = err.substr(err.find("error: "));
  EXPECT_NE(line.find("the modhost engine at " + address_ + " did not answer"), std::string::npos) << err;
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << "not one line: " << line;

  auto restarted = mh({"engine", "start"});
  ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
  auto services = via_daemon({"service", "ls", "mid"});
  EXPECT_EQ(services.exit_code, 0) << services.err;
  EXPECT_NE(services.out.find("slow"), std::string::npos) << services.out;
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
  fs::remove(slow.out_path);
  fs::remove(slow.err_path);
}

TEST_F(Daemon, OneThatCannotStartSaysWhyAndLeavesNothing) {
  auto r = mh({"--docker-host", "unix:///nonexistent/docker.sock", "engine", "start"});
  expect_error(r, 6, "the engine did not start");
  EXPECT_NE(r.err.find("no container backend"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/engine.sock"));
  EXPECT_FALSE(fs::exists(dir_ + "/engine.pid"));
  EXPECT_EQ(engine_processes(), 0);
  expect_error(mh({"engine", "status"}), 6, "not running");
  // And a client pointed at no engine says how to get one.
  expect_error(via_daemon({"enclave", "ls"}), 6, "start one with 'modhost engine start'");
  // A bad address is refused before anything starts.
  expect_error(mh({"engine", "start", "--listen", "udp://x"}), 3, "invalid listen address");
  EXPECT_EQ(engine_processes(), 0);
  expect_error(mh({"-H", "http://x", "enclave", "ls"}), 3, "invalid engine address");
}

TEST_F(Daemon, RemoteAccessNeedsTlsAndTheToken) {
  auto started = mh_json({"engine", "start", "--listen", "tcp://127.0.0.1:0"});
  ASSERT_TRUE(started.is_object());
  const std::string tcp(started.at("listen").as_array().at(1).as_string());
  ASSERT_EQ(tcp.rfind("tcp://127.0.0.1:", 0), 0u) << tcp;
  const std::string cert = dir_ + "/tls/cert.pem";
  const std::string token_file = dir_ + "/token";
  struct stat st {};
  ASSERT_EQ(::stat(token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ + "/tls/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto count_enclaves = [&] {
    auto r = mh_json({"enclave", "ls"});
    return r.is_object() ? r.at("enclaves").as_array().size() : size_t{999};
  };
  const size_t before = count_enclaves();

  expect_error(mh({"-H", tcp, "enclave", "add", "--name", "x1"}), 3, "needs its certificate");
  expect_error(mh({"-H", tcp, "--tls-ca", cert, "enclave", "add", "--name", "x2"}), 3, "needs its token");
  ::setenv("MODHOST_TOKEN", "not-the-token", 1);
  auto wrong = mh({"-H", tcp, "--tls-ca", cert, "enclave", "add", "--name", "x3"});
  ::unsetenv("MODHOST_TOKEN");
  expect_error(wrong, 5, "refused the call");
  EXPECT_EQ(count_enclaves(), before) << "a refused client changed something";

  // Plain gRPC without TLS gets nowhere on the TCP port.
  {
    auto channel = grpc::CreateChannel(tcp.substr(6), grpc::InsecureChannelCredentials());
    auto stub = engine_api::EngineService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 3s);
    engine_api::CreateEnclaveArgs in;
    in.set_name("x4");
    engine_api::Enclave out;
    EXPECT_FALSE(stub->CreateEnclave(&ctx, in, &out).ok());
  }
  EXPECT_EQ(count_enclaves(), before);

  auto ok =
      mh({"-H", tcp, "--tls-ca", cert, "--token-file", token_file, "enclave", "add", "--name", "remote"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(count_enclaves(), before + 1);
  auto hello =
      mh({"-H", tcp, "--tls-ca", cert, "--token-file", token_file, "module", "exec", "builtin:hello"});
  EXPECT_EQ(hello.exit_code, 0) << hello.err;
  EXPECT_NE(hello.out.find("hello from modhost"), std::string::npos);
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
}

TEST_F(Daemon, TheCliSaysTheSameEmbeddedAndThroughTheDaemon) {
  ASSERT_EQ(mh({"engine", "start"}).exit_code, 0);
  ASSERT_EQ(mh({"enclave", "add", "--name", "same"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "same", "box", kBusybox, "--ports", "p=8080/tcp", "--", "sh", "-c",
                "echo started; exec sleep 3600"})
                .exit_code,
            0);
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"enclave", "ls"},
           {"enclave", "inspect", "same"},
           {"-o", "json", "enclave", "inspect", "same"},
           {"service", "ls", "same"},
           {"service", "logs", "same", "box"},
           {"-o", "json", "enclave", "events", "same"},
           {"-o", "json", "service", "inspect", "same", "box"},
           {"service", "exec", "same", "box", "--", "echo", "hi"},
           {"service", "exec", "same", "box", "--", "sh", "-c", "exit 3"},
           {"service", "inspect", "same", "nope"},
           {"service", "add", "nowhere", "x", kBusybox},
           {"-o", "json", "service", "rm", "same", "nope"},
           {"files", "ls", "same"},
           {"module", "exec", "builtin:hello", "--execute-params", "{\"a\":1}"},
           {"module", "exec", "builtin:hello", "--execute-params", "{bad"},
           {"module", "exec", "builtin:nope"},
           {"module", "exec", "/nonexistent/plugin.so"},
       }) {
    auto embedded = mh(args);
    auto daemon = via_daemon(args);
    std::string what;
    for (const auto& a : args) what += a + " ";
    EXPECT_EQ(daemon.exit_code, embedded.exit_code) << what << daemon.err;
    EXPECT_EQ(daemon.out, embedded.out) << what;
    EXPECT_EQ(daemon.err, embedded.err) << what;
    if (args[1] == "logs") {
      EXPECT_NE(daemon.out.find("started"), std::string::npos) << daemon.out;
    }
  }
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
}

TEST_F(Daemon, ModulesStayLoadedBetweenExecutionsUntilUnloaded) {
  // Without a daemon there is nobody to keep a module loaded.
  expect_error(mh({"module", "load", "x", "builtin:hello"}), 5, "needs the engine daemon");

  ASSERT_EQ(mh({"engine", "start"}).exit_code, 0);
  ::setenv("MODHOST_HOST", address_.c_str(), 1);
  ASSERT_EQ(mh({"enclave", "add", "--name", "loads"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "loads", "victim", kBusybox, "--", "sleep", "3600"}).exit_code, 0);

  auto image =
      mh_json({"module", "load", "loads", "modhost/hello-module:0.1.0", "--load-params", "{\"x\":1}"});
  ASSERT_TRUE(image.is_object());
  const std::string image_id(image.at("id").as_string());
  const std::string container = scoped_containers(scope_, "module");
  ASSERT_FALSE(container.empty()) << "no module container after load";
  for (int i = 0; i < 2; ++i) {
    auto run =
        mh_json({"module", "execute", image_id, "--execute-params", "{\"round\":" + std::to_string(i) + "}"});
    ASSERT_TRUE(run.is_object());
    EXPECT_EQ(run.at("result").at("params").at("round").as_int64(), i);
    EXPECT_EQ(scoped_containers(scope_, "module"), container) << "execute changed the module container";
  }
  auto chaos = mh_json({"module", "load", "loads", "builtin:chaos"});
  const std::string chaos_id(chaos.at("id").as_string());
  auto killed = mh_json(
      {"module", "execute", chaos_id, "--execute-params", R"({"action":"kill","services":["victim"]})"});
  ASSERT_TRUE(killed.is_object());
  EXPECT_NE(mh({"service", "inspect", "loads", "victim"}).out.find("exited"), std::string::npos);

  auto listed = mh_json({"module", "ls", "loads"});
  ASSERT_EQ(listed.at("modules").as_array().size(), 2u);
  for (const auto& m : listed.at("modules").as_array()) {
    EXPECT_EQ(m.at("executions").as_int64(), m.at("id").as_string() == image_id ? 2 : 1);
  }

  expect_error(mh({"module", "execute", "000000000000"}), 4, "no loaded module");
  expect_error(mh({"module", "load", "nowhere", "builtin:hello"}), 4, "nowhere");
  expect_error(mh({"module", "load", "loads", "/nonexistent/m.so"}), 4, "m.so");
  expect_error(mh({"module", "load", "loads", "modhost/not-there:1"}), 4, "not-there");
  EXPECT_EQ(scoped_containers(scope_, "module"), container) << "a failed load left a container";

  auto unloaded = mh({"module", "unload", image_id});
  EXPECT_EQ(unloaded.exit_code, 0) << unloaded.err;
  EXPECT_EQ(scoped_containers(scope_, "module"), "") << "unload left the module container";
  expect_error(mh({"module", "unload", image_id}), 4, "no loaded module");

  // Removing the enclave unloads what is loaded in it.
  ASSERT_EQ(mh({"module", "load", "loads", "modhost/hello-module:0.1.0"}).exit_code, 0);
  ASSERT_EQ(mh({"enclave", "rm", "-f", "loads"}).exit_code, 0);
  EXPECT_EQ(scoped_containers(scope_, "module"), "");
  auto everywhere = mh({"-o", "json", "module", "execute", chaos_id});
  EXPECT_EQ(everywhere.exit_code, 4) << everywhere.out;
  ASSERT_EQ(mh({"engine", "stop"}).exit_code, 0);
}

}  // namespace
}  // namespace modhost::test
