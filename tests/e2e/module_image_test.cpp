// `modhost module exec IMAGE`: modules as containers in their enclave, the
// enclave API they reach, and every way such a module can fail. Each test
// works in its own label scope and asserts nothing of it is left.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <random>
#include <thread>

#include "support/docker_cli.hpp"

using modhost::test::CommandResult;
using modhost::test::run_command;
using namespace std::chrono_literals;

namespace {

using modhost::test::scoped_containers;

const std::string kModhost = modhost::test::kModhostCli;

class ModuleImage : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() {
    load_images({"modhost-datastore.tar", "modhost-busybox.tar", "modhost-module-hello.tar",
                 "modhost-module-datastore_army.tar", "test-module-fails.tar", "test-module-segfault.tar",
                 "test-module-hang.tar", "test-module-api_probe.tar"});
  }

  void TearDown() override {
    if (!scope_.empty()) {
      EXPECT_EQ(scoped_containers(scope_, "module"), "") << "a module container outlived its exec";
    }
    DockerCliTest::TearDown();
  }

  boost::json::value exec_json(std::vector<std::string> args) {
    args.insert(args.begin(), {"module", "exec"});
    return mh_json(args);
  }
};

TEST_F(ModuleImage, ExecCreatesAnEnclaveRunsTheModuleAndKeepsTheEnclave) {
  auto v = exec_json(
      {"modhost/hello-module:0.1.0", "--load-params", R"({"l":1})", "--execute-params", R"({"x":2})"});
  EXPECT_EQ(v.at("result").at("params").at("x").as_int64(), 2);
  EXPECT_EQ(v.at("result").at("loadParams").at("l").as_int64(), 1);
  std::string enclave(v.at("enclaveId").as_string());
  EXPECT_EQ(v.at("result").at("enclaveId").as_string(), enclave);
  // The module container is gone, the enclave is still there.
  EXPECT_EQ(scoped_containers(scope_, "module"), "");
  EXPECT_EQ(mh({"enclave", "inspect", enclave}).exit_code, 0);

  auto text = mh({"module", "exec", "modhost/hello-module:0.1.0"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.err.find("serving the module API"), std::string::npos) << "module output not streamed";
  EXPECT_NE(text.err.find("modhost enclave rm"), std::string::npos) << "no hint on removing the enclave";
}

TEST_F(ModuleImage, OneModuleSourceActsOnTheEnclaveAsImageAndAsPlugin) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "army"}).exit_code, 0);
  auto v = exec_json({"modhost/datastore_army-module:0.1.0", "--enclave-id", "army", "--execute-params",
                      R"({"numDatastores": 2})"});
  auto created = v.at("result").at("createdServiceIdsToPortIds").as_object();
  EXPECT_EQ(created.size(), 2u);
  EXPECT_TRUE(created.contains("datastore-0"));
  // The same source as a plugin, in-process, in the same enclave.
  auto p = exec_json({std::string(MODHOST_PLUGIN_DIR) + "/datastore_army.so", "--enclave-id", "army",
                      "--execute-params", R"({"numDatastores": 1})"});
  EXPECT_TRUE(p.at("result").at("createdServiceIdsToPortIds").as_object().contains("datastore-2"));
  auto ls = mh({"-o", "json", "service", "ls", "army"});
  auto services = boost::json::parse(ls.out).at("services").as_array();
  EXPECT_EQ(services.size(), 3u);
  for (const auto& s : services) EXPECT_EQ(s.at("status").as_string(), "running");
}

TEST_F(ModuleImage, AModuleReachesOnlyItsOwnEnclave) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "a"}).exit_code, 0);
  ASSERT_EQ(mh({"enclave", "add", "--name", "b"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "a", "secret", "modhost/busybox:1", "--", "sleep", "3600"}).exit_code, 0);
  // From its own enclave the service is visible through the API...
  auto seen = exec_json({"modhost-test/api_probe-module:1", "--enclave-id", "a", "--execute-params",
                         R"({"op":"inspect","service":"secret"})"});
  EXPECT_EQ(seen.at("result").at("name").as_string(), "secret");
  // ...from another enclave it does not exist.
  auto refused = mh({"module", "exec", "modhost-test/api_probe-module:1", "--enclave-id", "b",
                     "--execute-params", R"({"op":"inspect","service":"secret"})"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("not found"), std::string::npos) << refused.err;
  auto listed = exec_json(
      {"modhost-test/api_probe-module:1", "--enclave-id", "b", "--execute-params", R"({"op":"list"})"});
  EXPECT_EQ(listed.at("result").at("services").as_array().size(), 0u);
}

TEST_F(ModuleImage, AModuleRunsAnotherModuleAndStoresArtifactsThroughTheApi) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "c"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "c", "src", "modhost/busybox:1", "--", "sleep", "3600"}).exit_code, 0);
  auto composed = exec_json({"modhost-test/api_probe-module:1", "--enclave-id", "c", "--execute-params",
                             R"({"op":"compose","module":"builtin:hello","params":"{\"from\":\"probe\"}"})"});
  auto inner = boost::json::parse(composed.at("result").at("inner").as_string());
  EXPECT_EQ(inner.at("params").at("from"), "probe") << inner;

  auto stored = exec_json({"modhost-test/api_probe-module:1", "--enclave-id", "c", "--execute-params",
                           R"({"op":"artifact","service":"src","path":"/etc","name":"etc"})"});
  EXPECT_GT(stored.at("result").at("bytes").as_int64(), 0);
  auto listed = mh_json({"files", "ls", "c"});
  EXPECT_NE(boost::json::serialize(listed).find("\"etc\""), std::string::npos) << listed;

  // An image composes too: a module container of its own, gone afterwards.
  auto image = exec_json(
      {"modhost-test/api_probe-module:1", "--enclave-id", "c", "--execute-params",
       R"({"op":"compose","module":"modhost/hello-module:0.1.0","params":"{\"from\":\"image\"}"})"});
  auto from_image = boost::json::parse(image.at("result").at("inner").as_string());
  EXPECT_EQ(from_image.at("params").at("from"), "image") << from_image;
  EXPECT_EQ(scoped_containers(scope_, "module"), "") << "the composed module's container was left";
  // One that cannot start is the outer module's error, and leaves nothing.
  auto refused =
      mh({"module", "exec", "modhost-test/api_probe-module:1", "--enclave-id", "c", "--execute-params",
          R"({"op":"compose","module":"modhost-test/not-there:1","params":"{}"})"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("not-there"), std::string::npos) << refused.err;
  EXPECT_EQ(scoped_containers(scope_, "module"), "");
}

TEST_F(ModuleImage, FailuresAreOneLineErrorsAndLeaveNoModuleContainer) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "f"}).exit_code, 0);
  expect_error(mh({"module", "exec", "modhost-test/not-there:1", "--enclave-id", "f"}), 4, "not found");
  // The container exits before it is available: its own output says why.
  expect_error(
      mh({"module", "exec", "modhost-test/fails-module:1", "--enclave-id", "f", "--load-params", "fail"}), 5,
      "load refused");
  // Not available in time (a start timeout shorter than any start).
  auto slow =
      mh({"module", "exec", "modhost/hello-module:0.1.0", "--enclave-id", "f", "--start-timeout", "1ms"});
  EXPECT_EQ(slow.exit_code, 7) << slow.err;
  expect_error(mh({"module", "exec", "modhost-test/fails-module:1", "--enclave-id", "f"}), 9,
               "the fails module always fails");
  expect_error(mh({"module", "exec", "modhost-test/segfault-module:1", "--enclave-id", "f"}), 10, "crashed");
  expect_error(mh({"module", "exec", "modhost-test/hang-module:1", "--enclave-id", "f", "--timeout", "1s"}),
               7, "did not finish");
  expect_error(
      mh({"module", "exec", "modhost/hello-module:0.1.0", "--enclave-id", "f", "--execute-params", "{nope"}),
      3, "malformed JSON");
  expect_error(mh({"module", "exec", "modhost/hello-module:0.1.0", "--enclave-id", "no-such-enclave"}), 4,
               "no-such-enclave");
}

TEST_F(ModuleImage, CtrlCRemovesTheModuleContainerAndKeepsTheEnclave) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "int"}).exit_code, 0);
  int out_pipe[2];
  ASSERT_EQ(::pipe(out_pipe), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 2);
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::execl(kModhost.c_str(), kModhost.c_str(), "module", "exec", "modhost-test/hang-module:1",
            "--enclave-id", "int", nullptr);
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  // Wait until the module serves, then interrupt.
  std::string err;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (err.find("serving the module API") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    err.append(buf, static_cast<size_t>(n));
  }
  ASSERT_NE(err.find("serving the module API"), std::string::npos) << err;
  std::this_thread::sleep_for(300ms);
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(out_pipe[0]);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_EQ(scoped_containers(scope_, "module"), "");
  EXPECT_EQ(mh({"enclave", "inspect", "int"}).exit_code, 0);
}

}  // namespace
