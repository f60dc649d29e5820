// `modhost run` of Starlark packages and scripts as a user runs them, against
// a real backend (Docker; Native.* on the native backend; ViaDaemon.* through
// the engine daemon), each test in its own label scope with nothing left
// behind (support/docker_cli.hpp). Effects are checked by real traffic.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <set>

#include "backends/net.hpp"
#include "support/docker_cli.hpp"

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using modhost::test::CommandResult;

const std::string kPackages = MODHOST_STARLARK_TESTS "/packages";
const std::string kScripts = MODHOST_STARLARK_TESTS "/scripts";

class Starlark : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(std::string(MODHOST_IMAGE_DIR) + "/modhost-postgres.tar")) {
      load_images({"modhost-datastore.tar", "modhost-busybox.tar", "modhost-postgres.tar"});
    } else {
      load_images({"modhost-datastore.tar", "modhost-busybox.tar"});
    }
  }

  // `modhost -o json run ...`: the document, whatever the exit code.
  json::object run_json(std::vector<std::string> args, int expected_exit = 0) {
    args.insert(args.begin(), {"-o", "json", "run"});
    CommandResult r = mh(args);
    EXPECT_EQ(r.exit_code, expected_exit) << r.out << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    EXPECT_FALSE(ec) << r.out << r.err;
    return !ec && v.is_object() ? v.as_object() : json::object();
  }

  std::string status_of(const std::string& enclave, const std::string& service) {
    auto r = mh({"-o", "json", "service", "inspect", enclave, service});
    if (r.exit_code != 0) return "absent";
    return std::string(json::parse(r.out).at("status").as_string());
  }

  std::size_t service_count(const std::string& enclave) {
    return mh_json({"service", "ls", enclave}).at("services").as_array().size();
  }

  bool enclave_exists(const std::string& name) {
    const json::value list = mh_json({"enclave", "ls"});
    for (const auto& e : list.at("enclaves").as_array()) {
      if (e.at("name").as_string() == name) return true;
    }
    return false;
  }

  // The wall time of a command run in a service of the enclave.
  std::chrono::milliseconds timed_exec(const std::string& enclave, const std::string& service,
                                       const std::string& command, int* exit_code) {
    const auto start = std::chrono::steady_clock::now();
    auto r = mh({"service", "exec", enclave, service, "--", "sh", "-c", command});
    *exit_code = r.exit_code;
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  }
};

TEST_F(Starlark, AMultiFilePackageWithArgsRunsEndToEndAndARerunAddsNothing) {
  auto doc = run_json({kPackages + "/webapp", R"({"greeting": "good day", "who": "tester"})", "--enclave",
                       "web", "--package-dir", kPackages});
  ASSERT_TRUE(doc.contains("output")) << json::serialize(doc);
  const json::object& out = doc.at("output").as_object();
  // The template was rendered with the args and the db's address (a future
  // resolved at execution), mounted into a served site, and fetched over HTTP.
  const std::string page(out.at("page").as_string());
  EXPECT_NE(page.find("<h1>good day, tester!</h1>"), std::string::npos) << page;
  EXPECT_NE(page.find("<li>a</li><li>b</li>"), std::string::npos) << page;
  const std::string db_ip(out.at("db_ip").as_string());
  auto enclave = mh_json({"enclave", "inspect", "web"});
  EXPECT_TRUE(modhost::backend::ip_in_subnet(db_ip, std::string(enclave.at("subnet").as_string())))
      << db_ip << " not in " << enclave.at("subnet");
  EXPECT_NE(page.find("db at " + db_ip), std::string::npos) << page;
  // An exec's output became a later service's environment.
  EXPECT_EQ(out.at("token").as_string(), "token-GOOD-DAY");
  // A POST answered with JSON, fields extracted with jq paths.
  EXPECT_EQ(out.at("posted").as_string(), "tester");
  EXPECT_EQ(service_count("web"), 3u);
  const auto& instructions = doc.at("instructions").as_array();
  EXPECT_EQ(doc.at("executed").as_int64(), static_cast<std::int64_t>(instructions.size()));
  EXPECT_NE(instructions.at(0).at("position").as_string().find("main.star:"), std::string::npos);

  // The same package, args and enclave again: every instruction skipped.
  auto again = run_json({kPackages + "/webapp", R"({"greeting": "good day", "who": "tester"})", "--enclave",
                         "web", "--package-dir", kPackages});
  EXPECT_EQ(again.at("executed").as_int64(), 0);
  EXPECT_EQ(again.at("skipped").as_int64(), static_cast<std::int64_t>(instructions.size()));
  EXPECT_EQ(again.at("output"), doc.at("output"));
  EXPECT_EQ(service_count("web"), 3u);
  // In text, it says which it skipped.
  auto text = mh({"run", kPackages + "/webapp", R"({"greeting": "good day", "who": "tester"})", "--enclave",
                  "web", "--package-dir", kPackages});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("SKIPPED - This instruction has already been run in this enclave"),
            std::string::npos);
  EXPECT_NE(text.out.find("instructions skipped: already applied"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("User Services"), std::string::npos);
}

TEST_F(Starlark, TheExamplePackageStartsItsArmy) {
  auto doc = run_json(
      {MODHOST_SOURCE_DIR "/examples/datastore-army", R"({"num_datastores": 3})", "--enclave", "army"});
  ASSERT_TRUE(doc.contains("output")) << json::serialize(doc);
  EXPECT_EQ(doc.at("output").at("createdServiceIdsToPortIds").as_object().size(), 3u);
  EXPECT_EQ(service_count("army"), 3u);
  for (const char* name : {"datastore-0", "datastore-1", "datastore-2"})
    EXPECT_EQ(status_of("army", name), "running");
  auto bad = mh({"run", MODHOST_SOURCE_DIR "/examples/datastore-army", R"({"num_datastores": 0})"});
  expect_error(bad, 3, "num_datastores must be 1 to 50, not 0");
}

TEST_F(Starlark, SetConnectionIsProvenByTraffic) {
  // Subnetworks with nothing set: traffic flows.
  auto open = run_json({kScripts + "/network.star", R"({"mode": "none"})", "--enclave", "net"});
  ASSERT_EQ(open.at("executed").as_int64(), 2);
  // By address, checked to be inside the enclave's subnet first; with nc
  // (the static busybox's wget crashes here).
  const std::string ip(mh_json({"service", "inspect", "net", "right"}).at("ip").as_string());
  const std::string subnet(mh_json({"enclave", "inspect", "net"}).at("subnet").as_string());
  ASSERT_TRUE(modhost::backend::ip_in_subnet(ip, subnet)) << ip << " not in " << subnet;
  auto get_with_timeout = [&](int seconds) {
    return "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc -w " + std::to_string(seconds) + " " + ip +
           " 1323 | grep -q '^ok'";
  };
  const std::string get = get_with_timeout(10);
  int code = -1;
  const auto fast = timed_exec("net", "left", get, &code);
  ASSERT_EQ(code, 0) << "no traffic between the subnetworks before set_connection";

  // Delayed 300 ms each way: one HTTP exchange crosses at least four times.
  auto delayed = run_json({kScripts + "/network.star", R"({"mode": "delay"})", "--enclave", "net"});
  EXPECT_EQ(delayed.at("skipped").as_int64(), 2) << "the services were added again";
  const auto slow = timed_exec("net", "left", get, &code);
  EXPECT_EQ(code, 0);
  EXPECT_GE(slow, fast + 900ms) << "fast " << fast.count() << " ms, delayed " << slow.count() << " ms";

  // Blocked: no answer at all, while each side still answers itself.
  auto blocked = run_json({kScripts + "/network.star", R"({"mode": "blocked"})", "--enclave", "net"});
  EXPECT_EQ(blocked.at("executed").as_int64(), 1);
  timed_exec("net", "left", get_with_timeout(2), &code);
  EXPECT_NE(code, 0) << "traffic crossed a blocked connection";
  EXPECT_EQ(status_of("net", "right"), "running");
}

TEST_F(Starlark, ExecModuleRunsTheChaosModuleAsAStep) {
  auto doc = run_json({kScripts + "/chaos.star", "--enclave", "chaos"});
  ASSERT_TRUE(doc.contains("output")) << json::serialize(doc);
  json::value report = json::parse(doc.at("output").as_string());
  EXPECT_EQ(report.at("actions").at(0).at("service").as_string(), "victim");
  EXPECT_NE(status_of("chaos", "victim"), "running");
  EXPECT_EQ(status_of("chaos", "bystander"), "running");
}

TEST_F(Starlark, AddServicesStartsThemAllAndTasksStoreFiles) {
  auto doc = run_json({kScripts + "/parallel.star", R"({"count": 5})", "--enclave", "many"});
  ASSERT_EQ(doc.at("output").as_array().size(), 5u) << json::serialize(doc);
  EXPECT_EQ(service_count("many"), 5u);
  auto tasks = run_json({kScripts + "/tasks.star", "--enclave", "tasks"});
  EXPECT_EQ(tasks.at("output").at("task").as_string(), "done\n");
  auto files = mh_json({"files", "ls", "tasks"}).at("artifacts").as_array();
  std::set<std::string> names;
  for (const auto& f : files) names.insert(std::string(f.at("name").as_string()));
  EXPECT_TRUE(names.count("built") && names.count("copied")) << json::serialize(files);
  EXPECT_EQ(status_of("tasks", "reader"), "running");
  // ServiceConfig(user = User(uid, gid)): the service's processes run as it.
  EXPECT_EQ(tasks.at("output").at("ids").as_string(), "1500:1600\n");
  // The task's own container is gone.
  EXPECT_EQ(service_count("tasks"), 2u);
}

TEST_F(Starlark, DryRunValidatesAndChangesNothing) {
  auto fresh = mh({"run", kScripts + "/parallel.star", "--dry-run", "--enclave", "nothing-yet"});
  EXPECT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_NE(fresh.out.find("dry-run mode"), std::string::npos) << fresh.out;
  EXPECT_FALSE(enclave_exists("nothing-yet")) << "a dry run made the enclave";
  ASSERT_EQ(mh({"enclave", "add", "--name", "existing"}).exit_code, 0);
  auto listed = run_json({kScripts + "/parallel.star", "--dry-run", "--enclave", "existing"});
  EXPECT_EQ(listed.at("instructions").as_array().at(0).at("status").as_string(), "planned");
  EXPECT_EQ(service_count("existing"), 0u);
  // A dry run still validates against the enclave.
  auto invalid = mh({"run", kScripts + "/missing_image.star", "--dry-run", "--enclave", "existing"});
  EXPECT_EQ(invalid.exit_code, 3);
}

TEST_F(Starlark, EveryErrorNamesItsPositionExitsNonZeroAndLeavesNothing) {
  struct Case {
    std::string path;
    int exit_code;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {kScripts + "/syntax_error.star", 3, "syntax_error.star:3:1:"},
      {kScripts + "/missing_argument.star", 3,
       "missing_argument.star:2:21: add_service: missing argument for config"},
      {kScripts + "/type_error.star", 3, "PortSpec: for parameter number: got string, want int"},
      {kScripts + "/unknown_instruction.star", 3, "unknown_instruction.star:2:9: plan has no .launch_rocket"},
      {kScripts + "/no_such_service.star", 3, "no_such_service.star:3:14: there is no service 'ghost'"},
      {kScripts + "/missing_image.star", 3, "image 'nowhere/none:0' is not on the"},
      {kScripts + "/infinite_loop.star", 3, "Starlark steps: an infinite loop?"},
      {kPackages + "/cycle", 3, "import cycle: a.star -> b.star -> a.star"},
      {kPackages + "/webapp", 4, "no package provides \"github.com/modhost-tests/shared/naming.star\""},
      {kScripts + "/nowhere.star", 4, "no package or script at"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    auto r = mh({"run", c.path, "--enclave", "errors"});
    expect_error(r, c.exit_code, c.needle);
    EXPECT_FALSE(enclave_exists("errors")) << "a refused plan left its enclave";
  }
}

TEST_F(Starlark, AFailingVerifyOrWaitStopsThereAndKeepsTheEnclave) {
  auto r = mh({"run", kScripts + "/failing_verify.star", "--enclave", "verify"});
  expect_error(r, 9, "failing_verify.star:4:16: plan.verify: Verification failed '2' '==' '3'");
  EXPECT_NE(r.out.find("Error encountered running Starlark code."), std::string::npos);
  EXPECT_EQ(status_of("verify", "kept"), "running") << "the enclave is kept as Kurtosis keeps it";
  EXPECT_EQ(status_of("verify", "never"), "absent") << "an instruction after the failure ran";

  auto w = mh({"run", kScripts + "/wait_timeout.star", "--enclave", "waits"});
  expect_error(w, 7, "wait_timeout.star:3:14: plan.wait: the condition 'code' == '0' did not hold within 1s");
}

TEST_F(Starlark, TheKurtosisPostgresQuickstartRunsVerbatim) {
  if (!std::filesystem::exists(std::string(MODHOST_IMAGE_DIR) + "/modhost-postgres.tar")) {
    GTEST_SKIP() << "no postgres:15.2-alpine image packed (needs Debian's postgresql-15)";
  }
  auto r = mh({"run", kScripts + "/postgres.star", "--enclave", "pg"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Service 'postgres' added"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("postgresql: 5432/tcp -> postgresql://127.0.0.1:"), std::string::npos) << r.out;
  // A real PostgreSQL answers with the password the script set.
  auto info = mh_json({"service", "inspect", "pg", "postgres"});
  const auto port = info.at("ports").at(0).at("hostPort").as_int64();
  ASSERT_EQ(info.at("ports").at(0).at("hostIp").as_string(), "127.0.0.1");
  auto q = modhost::test::run_command(
      {"/usr/bin/env", "PGPASSWORD=password", "PGCONNECT_TIMEOUT=10", "psql", "-h", "127.0.0.1", "-p",
       std::to_string(port), "-U", "postgres", "-tAc",
       "create table t (v int); insert into t values (41), (1); select sum(v) from t"});
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.out.find("42"), std::string::npos) << q.out;
}

}  // namespace
