// `modhost module exec builtin:mutation` as a user runs it, against a real
// Docker engine: files written and commands run inside real services, a
// rolling config change that replaces containers one at a time and waits for
// each to answer HTTP, a bad image that leaves the service as it was, and
// scaling up and down. Each test works in its own label scope and checks with
// Docker itself that nothing of its own is left.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/docker_cli.hpp"

using modhost::test::run_command;

namespace {

const std::string kModhost = modhost::test::kModhostCli;
const std::string& kBusybox = modhost::test::kBusyboxImage;
const std::string kDatastore = "modhost/datastore:0.1.0";

class MutationDocker : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() {
    load_images({"modhost-busybox.tar", "modhost-datastore.tar", "modhost-module-mutation.tar"});
  }

  void make_enclave(const std::string& name) {
    enclave_ = std::string(mh_json({"enclave", "add", "--name", name}).at("id").as_string());
  }

  void add(const std::string& service, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"service", "add", enclave_, service};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = mh(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // A run as a person types it: errors on stderr.
  modhost::test::CommandResult mutate(const std::string& params) {
    return mh({"module", "exec", "builtin:mutation", "--enclave-id", enclave_, "--execute-params", params});
  }

  boost::json::object report(const std::string& params) {
    return module_report("builtin:mutation", enclave_, params);
  }

  std::string in(const std::string& service, const std::vector<std::string>& argv) {
    std::vector<std::string> args = {kModhost, "service", "exec", enclave_, service, "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    return run_command(args).out;
  }

  boost::json::value inspect(const std::string& service) {
    return mh_json({"service", "inspect", enclave_, service});
  }

  std::string env_of(const std::string& service) {
    if (modhost::test::native_backend()) {
      // The environment the native backend gave the service, from its state.
      const std::string enclave_id(inspect(service).at("enclaveId").as_string());
      return modhost::test::read_file(modhost::test::native_state_dir(scope_) + "/enclaves/" + enclave_id +
                                      "/services/" + service + "/service.json");
    }
    std::string id(inspect(service).at("id").as_string());
    return run_command({modhost::test::kDockerCli, "inspect", "-f", "{{json .Config.Env}}", id}).out;
  }

  std::string enclave_;
};

TEST_F(MutationDocker, WritesFilesAndRunsCommandsInsideServices) {
  make_enclave("files");
  add("s1", {kBusybox, "--", "sleep", "3600"});
  add("s2", {kBusybox, "--", "sleep", "3600"});

  report(R"({"action":"write_file","regex":".","path":"/tmp/hello.txt","content":"hi there\n"})");
  EXPECT_EQ(in("s1", {"cat", "/tmp/hello.txt"}), "hi there\n");
  EXPECT_EQ(in("s2", {"cat", "/tmp/hello.txt"}), "hi there\n");

  auto ran = report(
      R"({"action":"exec","services":["s2"],"command":["sh","-c","echo $((6*7)) > /tmp/answer; echo done"]})");
  EXPECT_EQ(ran.at("steps").at(0).at("output"), "done\n");
  EXPECT_EQ(in("s2", {"cat", "/tmp/answer"}), "42\n");
  EXPECT_EQ(in("s1", {"cat", "/tmp/answer"}).find("42"), std::string::npos);

  const std::string dir = ::testing::TempDir() + "/mutation-seed-" + scope_;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/seed.txt") << "seeded";
  ASSERT_EQ(mh({"files", "upload", enclave_, dir, "--name", "seed"}).exit_code, 0);
  report(R"({"action":"write_file","services":["s1"],"path":"/tmp","artifact":"seed"})");
  EXPECT_EQ(in("s1", {"cat", "/tmp/seed.txt"}), "seeded");
  std::filesystem::remove_all(dir);

  // A failing command stops the run at the first service, and says so.
  auto failed = mutate(R"({"action":"exec","services":["s1","s2"],"command":["sh","-c","exit 4"]})");
  expect_error(failed, 5,
               "mutation stopped at exec of 's1': exited with code 4, expected 0; done before it: nothing");
}

TEST_F(MutationDocker, RollingUpdateReplacesOneServiceAtATimeAndWaitsForIt) {
  make_enclave("rolling");
  add("db1", {kDatastore, "--ports", "http=1323/tcp", "--env", "MODE=old"});
  add("db2", {kDatastore, "--ports", "http=1323/tcp", "--env", "MODE=old"});
  const std::string id1(inspect("db1").at("id").as_string());

  auto r = report(R"({"action":"update","regex":"^db","env":{"MODE":"new","EXTRA":"1"},
                      "wait":{"http":"http","path":"/health","timeout_seconds":30}})");
  std::vector<std::string> steps;
  for (const auto& s : r.at("steps").as_array()) {
    steps.push_back(std::string(s.at("step").as_string()) + " " + std::string(s.at("service").as_string()));
  }
  EXPECT_EQ(steps, (std::vector<std::string>{"remove db1", "replace db1", "ready db1", "remove db2",
                                             "replace db2", "ready db2"}));
  EXPECT_NE(std::string(inspect("db1").at("id").as_string()), id1) << "a new container";
  for (const char* s : {"db1", "db2"}) {
    EXPECT_EQ(inspect(s).at("status"), "running") << s;
    EXPECT_NE(env_of(s).find("MODE=new"), std::string::npos) << env_of(s);
    EXPECT_NE(env_of(s).find("EXTRA=1"), std::string::npos) << env_of(s);
    EXPECT_EQ(inspect(s).at("ports").as_array().size(), 1u) << "ports kept";
  }

  // An image that does not exist: the service comes back as it was.
  auto bad = mutate(R"({"action":"update","services":["db1","db2"],"image":"modhost/does-not-exist:1"})");
  EXPECT_NE(bad.exit_code, 0);
  const std::string& said = bad.err;
  EXPECT_NE(said.find("mutation stopped at replace of 'db1'"), std::string::npos) << said;
  EXPECT_NE(said.find("the previous config was restored"), std::string::npos) << said;
  EXPECT_EQ(inspect("db1").at("status"), "running");
  EXPECT_EQ(inspect("db1").at("image"), kDatastore.c_str());
  EXPECT_NE(env_of("db1").find("MODE=new"), std::string::npos);
}

TEST_F(MutationDocker, ScalesUpWithNumberedCopiesAndDownAgain) {
  make_enclave("scale");
  add("w", {kBusybox, "--", "sleep", "3600"});
  report(R"({"action":"scale","service":"w","replicas":3})");
  auto ls = mh_json({"service", "ls", enclave_});
  std::vector<std::string> names;
  for (const auto& s : ls.at("services").as_array()) names.emplace_back(s.at("name").as_string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"w", "w-2", "w-3"}));
  EXPECT_EQ(inspect("w-3").at("status"), "running");

  auto down = report(R"({"action":"scale","service":"w","replicas":1})");
  EXPECT_EQ(down.at("steps").at(0).at("service"), "w-3");
  EXPECT_EQ(mh_json({"service", "ls", enclave_}).at("services").as_array().size(), 1u);

  expect_error(mutate(R"({"action":"scale","service":"ghost","replicas":2})"), 3, "unknown service 'ghost'");
  expect_error(mutate(R"({"action":"scale","service":"w","replicas":0})"), 3, "outside 1..100");
}

TEST_F(MutationDocker, TheModuleImageDoesTheSameThroughTheEnclaveApi) {
  make_enclave("image");
  add("w", {kBusybox, "--", "sleep", "3600"});
  auto run = [&](const std::string& params) {
    auto r = mh({"module", "exec", "modhost/mutation-module:0.1.0", "--enclave-id", enclave_,
                 "--execute-params", params});
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  };
  run(R"({"action":"write_file","services":["w"],"path":"/tmp/from-api","content":"over grpc"})");
  EXPECT_EQ(in("w", {"cat", "/tmp/from-api"}), "over grpc");
  run(R"({"action":"scale","service":"w","replicas":2,"wait":{"exec":["true"]}})");
  EXPECT_EQ(inspect("w-2").at("status"), "running");
}

}  // namespace
