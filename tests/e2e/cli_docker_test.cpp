// The enclave, service, files, image and clean verbs as a user runs them,
// against a real Docker engine (support/docker_cli.hpp: one label scope per
// test, nothing left behind).
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "support/docker_cli.hpp"

using modhost::test::CommandResult;
using modhost::test::run_command;
using namespace std::chrono_literals;

namespace {

using modhost::test::labelled;

const std::string kModhost = modhost::test::kModhostCli;
const std::string kDatastore = "modhost/datastore:0.1.0";
const std::string kBusybox = "modhost/busybox:1";

class CliDocker : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() { load_images({"modhost-datastore.tar", "modhost-busybox.tar"}); }
};

TEST_F(CliDocker, EnclaveLifecycle) {
  auto added = mh_json({"enclave", "add", "--name", "e1"});
  std::string id(added.at("id").as_string());
  EXPECT_EQ(id.size(), 32u);
  auto list = mh_json({"enclave", "ls"});
  ASSERT_EQ(list.at("enclaves").as_array().size(), 1u);
  EXPECT_EQ(list.at("enclaves").at(0).at("name").as_string(), "e1");

  auto text = mh({"enclave", "ls"});
  EXPECT_NE(text.out.find("UUID"), std::string::npos);
  EXPECT_NE(text.out.find("CREATION TIME"), std::string::npos);
  EXPECT_NE(text.out.find(id), std::string::npos);

  // By name, by id and by id prefix.
  EXPECT_EQ(mh_json({"enclave", "inspect", "e1"}).at("id").as_string(), id);
  EXPECT_EQ(mh_json({"enclave", "inspect", id.substr(0, 8)}).at("name").as_string(), "e1");
  expect_error(mh({"enclave", "add", "--name", "e1"}), 5, "e1");
  EXPECT_EQ(mh({"enclave", "rm", "e1"}).exit_code, 0);
  EXPECT_EQ(mh_json({"enclave", "ls"}).at("enclaves").as_array().size(), 0u);
}

TEST_F(CliDocker, ServicesPortsExecLogsAndLifecycle) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "svc"}).exit_code, 0);
  auto db = mh_json({"service", "add", "svc", "db", kDatastore, "--ports", "http=1323/tcp", "--env",
                     "MODE=test", "--label", "team=qa", "--wait", "http:http/health", "--wait-body", "ok"});
  ASSERT_EQ(db.at("ports").as_array().size(), 1u);
  EXPECT_EQ(db.at("ports").at(0).at("hostIp").as_string(), "127.0.0.1");
  EXPECT_GT(db.at("ports").at(0).at("hostPort").as_int64(), 0);

  // inspect shows the port as "http: 1323/tcp -> 127.0.0.1:PORT".
  auto inspect = mh({"enclave", "inspect", "svc"});
  std::string expected =
      "http: 1323/tcp -> 127.0.0.1:" + std::to_string(db.at("ports").at(0).at("hostPort").as_int64());
  EXPECT_NE(inspect.out.find(expected), std::string::npos) << inspect.out;

  // A busybox service reaches db by name inside the enclave.
  ASSERT_EQ(mh({"service", "add", "svc", "probe", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  auto get = mh({"service", "exec", "svc", "probe", "--", "wget", "-q", "-O", "-", "http://db:1323/health"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("ok"), std::string::npos);
  // exec passes on the command's exit code.
  EXPECT_EQ(mh({"service", "exec", "svc", "probe", "--", "sh", "-c", "exit 3"}).exit_code, 3);
  // --user: the service and its execs run as that user.
  ASSERT_EQ(mh({"service", "add", "svc", "nobody", kBusybox, "--user", "4000:4001", "--", "sleep", "3600"})
                .exit_code,
            0);
  EXPECT_EQ(mh({"service", "exec", "svc", "nobody", "--", "sh", "-c", "echo $(id -u):$(id -g)"}).out,
            "4000:4001\n");
  expect_error(mh({"service", "add", "svc", "bad", kBusybox, "--user", "a:b:c"}), 3, "bad user");
  EXPECT_EQ(mh({"service", "rm", "svc", "nobody"}).exit_code, 0);

  auto logs = mh({"service", "logs", "svc", "db"});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_NE(logs.out.find("/health"), std::string::npos) << logs.out;

  auto status = [&](const char* name) {
    return std::string(mh_json({"service", "inspect", "svc", name}).at("status").as_string());
  };
  EXPECT_EQ(mh({"service", "pause", "svc", "db"}).exit_code, 0);
  EXPECT_EQ(status("db"), "paused");
  EXPECT_EQ(mh({"service", "unpause", "svc", "db"}).exit_code, 0);
  EXPECT_EQ(status("db"), "running");
  EXPECT_EQ(mh({"service", "stop", "svc", "db", "--grace", "2"}).exit_code, 0);
  EXPECT_NE(status("db"), "running");
  EXPECT_EQ(mh({"service", "start", "svc", "db"}).exit_code, 0);
  EXPECT_EQ(status("db"), "running");
  EXPECT_EQ(mh({"service", "restart", "svc", "db"}).exit_code, 0);
  EXPECT_EQ(status("db"), "running");
  EXPECT_EQ(mh({"service", "kill", "svc", "probe", "--signal", "KILL"}).exit_code, 0);
  EXPECT_NE(status("probe"), "running");
  EXPECT_EQ(mh({"service", "rm", "svc", "probe"}).exit_code, 0);
  EXPECT_EQ(mh_json({"service", "ls", "svc"}).at("services").as_array().size(), 1u);

  // enclave stop stops everything; rm without -f refuses a running enclave.
  ASSERT_EQ(mh({"enclave", "stop", "svc"}).exit_code, 0);
  EXPECT_EQ(status("db") == "running", false);
}

TEST_F(CliDocker, RemovingARunningEnclaveNeedsForce) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "busy"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "busy", "s", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  auto refused = mh({"enclave", "rm", "busy"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("-f"), std::string::npos) << refused.err;
  EXPECT_EQ(mh({"enclave", "rm", "-f", "busy"}).exit_code, 0);
}

TEST_F(CliDocker, FilesArtifactsRoundTripAndMount) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "files"}).exit_code, 0);
  std::string dir = ::testing::TempDir() + "/modhost-files-" + scope_;
  std::filesystem::create_directories(dir + "/conf");
  std::ofstream(dir + "/conf/app.cfg") << "answer=42\n";
  auto up = mh_json({"files", "upload", "files", dir, "--name", "cfg"});
  EXPECT_EQ(up.at("name").as_string(), "cfg");
  EXPECT_EQ(mh_json({"files", "ls", "files"}).at("artifacts").as_array().size(), 1u);

  // Mounted read-only into a service.
  ASSERT_EQ(
      mh({"service", "add", "files", "reader", kBusybox, "--files", "cfg:/config", "--", "sleep", "3600"})
          .exit_code,
      0);
  auto cat = mh({"service", "exec", "files", "reader", "--", "cat", "/config/conf/app.cfg"});
  EXPECT_EQ(cat.out, "answer=42\n");
  EXPECT_NE(mh({"service", "exec", "files", "reader", "--", "sh", "-c", "echo x > /config/new"}).exit_code, 0)
      << "the artifact mount is writable";

  // Downloaded content equals the upload.
  std::string out = dir + "-download";
  ASSERT_EQ(mh({"files", "download", "files", "cfg", out}).exit_code, 0);
  std::ifstream in(out + "/conf/app.cfg");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "answer=42\n");

  // Copied out of a service.
  ASSERT_EQ(
      mh({"service", "exec", "files", "reader", "--", "sh", "-c", "mkdir -p /data && echo made > /data/x"})
          .exit_code,
      0);
  auto stored = mh_json({"files", "store-from-service", "files", "reader", "/data", "--name", "made"});
  EXPECT_EQ(stored.at("name").as_string(), "made");
  std::string out2 = dir + "-made";
  ASSERT_EQ(mh({"files", "download", "files", "made", out2}).exit_code, 0);
  EXPECT_TRUE(std::filesystem::exists(out2 + "/data/x") || std::filesystem::exists(out2 + "/x"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(out);
  std::filesystem::remove_all(out2);
}

TEST_F(CliDocker, DumpWritesSpecsAndLogs) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "dumped"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "dumped", "talker", kBusybox, "--", "sh", "-c",
                "echo said-something; sleep 3600"})
                .exit_code,
            0);
  std::string dir = ::testing::TempDir() + "/modhost-dump-" + scope_;
  std::filesystem::remove_all(dir);
  ASSERT_EQ(mh({"enclave", "dump", "dumped", dir}).exit_code, 0);
  EXPECT_TRUE(std::filesystem::exists(dir + "/enclave.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/services/talker/spec.json"));
  std::ifstream in(dir + "/services/talker/output.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("said-something"), std::string::npos);
  expect_error(mh({"enclave", "dump", "dumped", dir}), 5, "not empty");
  std::filesystem::remove_all(dir);
}

TEST_F(CliDocker, BadInputIsOneLineAndLeavesNothing) {
  expect_error(mh({"enclave", "inspect", "no-such-enclave"}), 4, "no-such-enclave");
  ASSERT_EQ(mh({"enclave", "add", "--name", "bad"}).exit_code, 0);
  expect_error(mh({"service", "add", "bad", "x", kBusybox, "--ports", "http=99999"}), 3, "invalid port spec");
  expect_error(mh({"service", "add", "bad", "x", kBusybox, "--ports", "http"}), 3, "invalid port spec");
  expect_error(mh({"service", "add", "bad", "x", kBusybox, "--env", "=v"}), 3, "KEY=VALUE");
  expect_error(mh({"service", "add", "bad", "x", "modhost/not-there:404"}), 4, "not found");
  expect_error(mh({"service", "inspect", "bad", "ghost"}), 4, "ghost");
  ASSERT_EQ(mh({"service", "add", "bad", "dup", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  expect_error(mh({"service", "add", "bad", "dup", kBusybox, "--", "sleep", "3600"}), 5, "dup");
  // A command that cannot be run, and a container that exits at once: the
  // add fails, at once or in its readiness wait, with the reason (the exit
  // code and the container's own output), and nothing is left.
  auto nocmd = mh({"service", "add", "bad", "nocmd", kBusybox, "--ports", "http=8080", "--wait", "tcp:http",
                   "--entrypoint", "/no/such/program"});
  EXPECT_EQ(nocmd.exit_code, 5) << nocmd.err;
  EXPECT_NE(nocmd.err.find("/no/such/program"), std::string::npos) << nocmd.err;
  auto quits = mh({"service", "add", "bad", "quits", kBusybox, "--ports", "http=8080", "--wait", "tcp:http",
                   "--", "sh", "-c", "echo config-missing; exit 1"});
  EXPECT_EQ(quits.exit_code, 5) << quits.err;
  EXPECT_NE(quits.err.find("with code 1"), std::string::npos) << quits.err;
  EXPECT_NE(quits.err.find("config-missing"), std::string::npos) << quits.err;
  // A readiness wait that never succeeds: timeout, and the service is removed.
  auto never = mh({"service", "add", "bad", "never", kBusybox, "--ports", "http=8080", "--wait", "tcp:http",
                   "--wait-retries", "3", "--wait-interval", "100ms", "--", "sleep", "3600"});
  expect_error(never, 7, "never");
  auto names = mh_json({"service", "ls", "bad"});
  for (const auto& s : names.at("services").as_array()) {
    EXPECT_NE(s.at("name").as_string(), "quits");
    EXPECT_NE(s.at("name").as_string(), "never");
    EXPECT_NE(s.at("name").as_string(), "nocmd");
  }
  expect_error(mh({"--docker-host", "unix:///nonexistent/docker.sock", "enclave", "ls"}), 6, "dockerd");
}

// A CLI killed in the middle of its work leaves half-made resources; `clean`
// removes them.
TEST_F(CliDocker, CleanRemovesWhatAKilledCliLeft) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "base"}).exit_code, 0);
  for (int delay_ms : {5, 20, 60, 150}) {
    for (std::vector<std::string> args :
         {std::vector<std::string>{kModhost, "enclave", "add", "--name", "k" + std::to_string(delay_ms)},
          std::vector<std::string>{kModhost, "service", "add", "base", "k" + std::to_string(delay_ms),
                                   kDatastore, "--ports", "http=1323", "--wait", "http:http/health"}}) {
      pid_t pid = ::fork();
      if (pid == 0) {
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // The engine finishes a request whose client was killed on its own time: a
  // container may appear just after `clean` ran. Run clean until the engine
  // has settled; what matters is that clean removes every kind of remains.
  CommandResult cleaned;
  for (int attempt = 0; attempt < 10; ++attempt) {
    cleaned = mh({"clean", "--all"});
    ASSERT_EQ(cleaned.exit_code, 0) << cleaned.err;
    if (labelled(scope_).empty()) break;
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(labelled(scope_), "") << cleaned.out;
}

}  // namespace

namespace {

TEST_F(CliDocker, FilesRmFreesTheNameAndRefusesAMountedArtifact) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "rmfiles"}).exit_code, 0);
  std::string dir = ::testing::TempDir() + "/modhost-rm-" + scope_;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/a.txt") << "one\n";
  ASSERT_EQ(mh({"files", "upload", "rmfiles", dir, "--name", "doomed"}).exit_code, 0);
  ASSERT_EQ(mh({"files", "upload", "rmfiles", dir, "--name", "mounted"}).exit_code, 0);
  ASSERT_EQ(
      mh({"service", "add", "rmfiles", "reader", kBusybox, "--files", "mounted:/m", "--", "sleep", "3600"})
          .exit_code,
      0);
  EXPECT_EQ(mh_json({"files", "rm", "rmfiles", "doomed"}).at("removed").as_string(), "doomed");
  expect_error(mh({"files", "rm", "rmfiles", "doomed"}), 4, "no such artifact");
  ASSERT_EQ(mh({"files", "upload", "rmfiles", dir, "--name", "doomed"}).exit_code, 0)
      << "the name is not free";
  // Docker keeps a volume a container mounts.
  expect_error(mh({"files", "rm", "rmfiles", "mounted"}), 5, "a service mounts it");
  EXPECT_EQ(mh({"service", "exec", "rmfiles", "reader", "--", "cat", "/m/a.txt"}).out, "one\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
