// The engine's half of `modhost run` without a backend: plans, future
// references, extraction, comparisons, validation and execution order
// against a fake enclave (tests/starlark/starlark_test.cpp runs the real thing).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>
#include <set>

#include "starlark/plan.hpp"
#include "starlark/run.hpp"
#include "starlark/values.hpp"

namespace {

namespace json = boost::json;
using namespace modhost;
using namespace modhost::starlark;

TEST(StarlarkReferences, FoundInStringsAndResolvedWithTheirType) {
  auto refs = find_references("http://{{modhost:3:ip_address}}:80/{{modhost:12:extract.id}}");
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].index, 3u);
  EXPECT_EQ(refs[0].field, "ip_address");
  EXPECT_EQ(refs[1].index, 12u);
  EXPECT_EQ(refs[1].field, "extract.id");
  EXPECT_TRUE(find_references("{{modhost:x:ip}} {{kurtosis:1:a}} {{modhost:1:}}").empty());

  Futures f;
  f.set(3, "ip_address", json::value("10.0.0.2"));
  f.set(4, "code", json::value(0));
  auto v = f.resolve(json::parse(R"({"a": "{{modhost:4:code}}", "b": "code={{modhost:4:code}}",
                                     "c": ["x{{modhost:3:ip_address}}"]})"));
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->at("a"), json::value(0)) << "a lone reference keeps its type";
  EXPECT_EQ(v->at("b"), json::value("code=0"));
  EXPECT_EQ(v->at("c").at(0), json::value("x10.0.0.2"));
  auto missing = f.resolve(json::value("{{modhost:9:output}}"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("not known yet"), std::string::npos);
}

TEST(StarlarkExtract, PathsPipesAndFunctions) {
  const json::value body = json::parse(R"({"a": {"b": [10, {"c": "x"}]}, "n": "42", "s": "Hi"})");
  auto eval = [&](const char* e, const json::value& in) {
    auto x = Extractor::compile(e);
    EXPECT_TRUE(x.ok()) << e << ": " << (x.ok() ? "" : x.error().message());
    if (!x.ok()) return json::value(nullptr);
    auto r = x->apply(in);
    EXPECT_TRUE(r.ok()) << e << ": " << (r.ok() ? "" : r.error().message());
    return r.ok() ? r.value() : json::value(nullptr);
  };
  EXPECT_EQ(eval(".a.b[0]", body), json::value(10));
  EXPECT_EQ(eval(".a.b[1].c", body), json::value("x"));
  EXPECT_EQ(eval(".a.b[-1] | .c", body), json::value("x"));
  EXPECT_EQ(eval(".[\"a\"] | .b | length", body), json::value(2));
  EXPECT_EQ(eval(".n | tonumber", body), json::value(42));
  EXPECT_EQ(eval(".s | ascii_downcase", body), json::value("hi"));
  EXPECT_EQ(eval(".missing", body), json::value(nullptr));
  EXPECT_EQ(eval("fromjson | .k", json::value(R"({"k": true})")), json::value(true));
  EXPECT_EQ(eval(".", json::value("raw")), json::value("raw"));
  EXPECT_EQ(eval("keys", body), json::parse(R"(["a", "n", "s"])"));
  for (const char* bad : {"", ".a |", "map(.x)", ".a[", "| .a", ".a b"}) {
    EXPECT_FALSE(Extractor::compile(bad).ok()) << bad;
  }
  auto x = Extractor::compile(".a.b");
  ASSERT_TRUE(x.ok());
  EXPECT_FALSE(x->apply(json::value("text")).ok()) << "a string has no keys";
}

TEST(StarlarkCompare, TypedAsKurtosis) {
  auto is = [](const char* a, const char* op, const char* b) {
    auto r = compare(json::parse(a), op, json::parse(b));
    EXPECT_TRUE(r.ok()) << a << op << b;
    return r.ok() && r.value();
  };
  EXPECT_TRUE(is("200", "==", "200"));
  EXPECT_TRUE(is("1", "==", "1.0"));
  EXPECT_FALSE(is("\"0\"", "==", "0")) << "a string never equals a number";
  EXPECT_TRUE(is("\"0\"", "!=", "0"));
  EXPECT_TRUE(is("5", ">=", "5"));
  EXPECT_TRUE(is("\"b\"", ">", "\"a\""));
  EXPECT_TRUE(is("2", "IN", "[1, 2]"));
  EXPECT_TRUE(is("3", "NOT_IN", "[1, 2]"));
  EXPECT_FALSE(compare(json::value("a"), "<", json::value(1)).ok());
  EXPECT_FALSE(compare(json::value(1), "IN", json::value(1)).ok());
  EXPECT_FALSE(valid_assertion("=~"));
}

TEST(StarlarkPlan, ParsedAndRefusedWhenMalformed) {
  auto p = parse_plan(R"({"version": 1, "package": "github.com/x/y", "main_file": "main.star",
      "instructions": [{"kind": "assert", "position": "main.star:2:5", "text": "t", "description": "d",
                        "args": {"value": 1, "assertion": "==", "target_value": 1}}], "output": {"k": 1}})");
  ASSERT_TRUE(p.ok()) << p.error().message();
  ASSERT_EQ(p->instructions.size(), 1u);
  EXPECT_EQ(p->instructions[0].kind, "verify") << "plan.assert is plan.verify";
  EXPECT_EQ(p->package, "github.com/x/y");
  EXPECT_FALSE(parse_plan("{").ok());
  EXPECT_FALSE(parse_plan(R"({"version": 2, "instructions": []})").ok());
  auto unknown =
      parse_plan(R"({"version": 1, "instructions": [{"kind": "rm_rf", "position": "m:1:1", "args": {}}]})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message().find("m:1:1"), std::string::npos);
}

// An enclave in memory: services, artifacts, images, and what was done.
class FakeTarget final : public Target {
 public:
  std::map<std::string, ServiceInfo> services;
  std::map<std::string, std::string> artifacts;
  std::set<std::string> images = {"img:1"};
  std::vector<std::string> log;
  std::vector<NetworkPartitioning> partitionings;
  int next_ip = 2;

  std::string backend_name() const override { return "fake"; }
  std::string enclave_name() const override { return "e"; }
  bool enclave_exists() const override { return true; }
  Result<ServiceInfo> add_service(const ServiceConfig& c) override {
    log.push_back("add " + c.name);
    ServiceInfo s;
    s.name = c.name;
    s.id = "id-" + c.name;
    s.ip = "10.0.0." + std::to_string(next_ip++);
    s.status = ServiceStatus::running;
    s.labels = c.labels;
    services[c.name] = s;
    return s;
  }
  Result<ServiceInfo> inspect_service(const std::string& n) override {
    auto i = services.find(n);
    if (i == services.end()) return Error(ErrorCode::not_found, "no service " + n);
    return i->second;
  }
  Result<std::vector<ServiceInfo>> list_services() override {
    std::vector<ServiceInfo> out;
    for (auto& [k, v] : services) out.push_back(v);
    return out;
  }
  Status remove_service(const std::string& n) override {
    log.push_back("rm " + n);
    services.erase(n);
    return ok_status();
  }
  Status start_service(const std::string& n) override {
    log.push_back("start " + n);
    return ok_status();
  }
  Status stop_service(const std::string& n) override {
    log.push_back("stop " + n);
    return ok_status();
  }
  Result<ExecResult> exec(const std::string& s, const std::vector<std::string>& argv) override {
    std::string joined;
    for (const auto& a : argv) joined += (joined.empty() ? "" : " ") + a;
    log.push_back("exec " + s + " " + joined);
    return ExecResult{argv.back() == "fail" ? 3 : 0, "{\"v\": \"" + argv.back() + "\"}\n"};
  }
  Status wait_ready(const std::string&, const ReadinessCheck&) override { return ok_status(); }
  Result<std::vector<backend::ArtifactInfo>> list_artifacts() override {
    std::vector<backend::ArtifactInfo> out;
    for (auto& [k, v] : artifacts) out.push_back({k, "e", v.size(), ""});
    return out;
  }
  Status store_artifact(const std::string& n, const std::string& tgz) override {
    if (artifacts.count(n)) return Error(ErrorCode::already_exists, n);
    if (n != kRecordArtifact) log.push_back("store " + n);
    artifacts[n] = tgz;
    return ok_status();
  }
  Status remove_artifact(const std::string& n) override {
    artifacts.erase(n);
    return ok_status();
  }
  Result<std::string> download_artifact(const std::string& n) override {
    auto i = artifacts.find(n);
    if (i == artifacts.end()) return Error(ErrorCode::not_found, n);
    return i->second;
  }
  Status store_from_service(const std::string& s, const std::string& p, const std::string& n) override {
    log.push_back("store-from " + s + " " + p + " " + n);
    artifacts[n] = "x";
    return ok_status();
  }
  Result<bool> image_exists(const std::string& r) override { return images.count(r) > 0; }
  Status repartition(const NetworkPartitioning& p) override {
    partitionings.push_back(p);
    return ok_status();
  }
  Status check_module(const std::string& r) override {
    if (r != "builtin:hello") return Error(ErrorCode::not_found, "no module " + r);
    return ok_status();
  }
  Result<std::string> run_module(const std::string& r, const std::string&, const std::string& params,
                                 std::optional<std::chrono::milliseconds>,
                                 const std::function<void(std::string_view)>&) override {
    log.push_back("module " + r + " " + params);
    return std::string("{\"ok\": true}");
  }
};

std::string plan_of(const std::string& instructions, const std::string& output = "null") {
  return R"({"version": 1, "instructions": [)" + instructions + R"(], "output": )" + output + "}";
}

std::string add(const std::string& name, const std::string& image = "img:1", const std::string& extra = "") {
  return R"({"kind": "add_service", "position": "main.star:1:1", "args": {"name": ")" + name +
         R"(", "config": {"image": ")" + image + R"(", "ports": {"http": {"number": 80, "wait": null}})" +
         extra + "}}}";
}

Result<RunReport> execute(FakeTarget& t, const std::string& plan_json, bool dry_run = false,
                          std::vector<RunEvent>* events = nullptr) {
  auto plan = parse_plan(plan_json);
  if (!plan.ok()) return plan.error();
  RunOptions o;
  o.dry_run = dry_run;
  RunReport report;
  Status s = run(
      plan.value(), t, o,
      [&](const RunEvent& e) {
        if (events) events->push_back(e);
      },
      {}, report);
  if (!s.ok()) return s.error();
  return report;
}

TEST(StarlarkRun, FuturesFlowFromOneInstructionIntoTheNext) {
  FakeTarget t;
  const std::string p = plan_of(
      add("a") + "," +
          R"({"kind": "exec", "position": "main.star:2:1", "args": {"service_name": "a",
              "recipe": {"type": "exec", "command": ["echo", "hi"], "extract": {"v": "fromjson | .v"}}}},)"
          R"({"kind": "add_service", "position": "main.star:3:1", "args": {"name": "b", "config": {"image": "img:1",
              "env_vars": {"PEER": "{{modhost:0:ip_address}}", "GOT": "{{modhost:1:extract.v}}"}}}},)"
          R"({"kind": "verify", "position": "main.star:4:1", "args": {"value": "{{modhost:1:code}}", "assertion": "==", "target_value": 0}})",
      R"({"ip": "{{modhost:0:ip_address}}"})");
  auto r = execute(t, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->executed, 4u);
  EXPECT_EQ(r->output, json::parse(R"({"ip": "10.0.0.2"})"));
  ASSERT_TRUE(t.services.count("b"));
  EXPECT_EQ(t.services["b"].labels["modhost.starlark"], "true");

  // The same plan again: everything skipped, nothing added, the output the same.
  const auto before = t.log.size();
  auto again = execute(t, p);
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->skipped, 4u);
  EXPECT_EQ(again->executed, 0u);
  EXPECT_EQ(t.log.size(), before) << "a rerun did something";
  EXPECT_EQ(again->output, r->output);
}

TEST(StarlarkRun, ValidationReportsEveryProblemWithItsPositionAndChangesNothing) {
  FakeTarget t;
  ServiceInfo manual;
  manual.name = "manual";
  manual.id = "m";
  t.services["manual"] = manual;
  const std::string p = plan_of(
      add("a", "missing:1") + "," + add("manual") + "," +
      R"({"kind": "exec", "position": "main.star:7:3", "args": {"service_name": "ghost", "recipe": {"type": "exec", "command": ["x"]}}},)"
      R"({"kind": "request", "position": "main.star:8:3", "args": {"service_name": "a", "recipe": {"type": "get", "port_id": "nope", "endpoint": "/"}}},)"
      R"({"kind": "add_service", "position": "main.star:9:3", "args": {"name": "c", "config": {"image": "img:1", "files": {"/d": {"artifact_names": ["nothing"]}}}}},)"
      R"({"kind": "print", "position": "main.star:10:3", "args": {"msg": "{{modhost:10:output}}"}},)"
      R"({"kind": "exec_module", "position": "main.star:11:3", "args": {"module": "builtin:nope", "params": "{}"}})");
  auto r = execute(t, p);
  ASSERT_FALSE(r.ok());
  const std::string m = r.error().message();
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  for (const char* needle :
       {"7 problems", "main.star:1:1: image 'missing:1' is not on the fake backend",
        "already exists in enclave 'e' and was not added by a plan",
        "main.star:7:3: there is no service 'ghost'", "main.star:8:3: service 'a' has no port 'nope'",
        "main.star:9:3: there is no files artifact 'nothing'",
        "main.star:10:3:", "main.star:11:3: no module builtin:nope"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << "\n" << m;
  }
  EXPECT_TRUE(t.log.empty()) << "validation changed the enclave";
}

TEST(StarlarkRun, DryRunListsAndChangesNothing) {
  FakeTarget t;
  std::vector<RunEvent> events;
  auto r = execute(t, plan_of(add("a") + "," + add("b")), true, &events);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(events.size(), 2u);
  EXPECT_TRUE(t.log.empty());
  EXPECT_TRUE(t.artifacts.empty()) << "a dry run recorded itself";
}

TEST(StarlarkRun, StopsAtTheFailingInstructionNamingItsPosition) {
  FakeTarget t;
  const std::string p = plan_of(
      add("a") + "," +
      R"({"kind": "exec", "position": "main.star:5:9", "args": {"service_name": "a", "recipe": {"type": "exec", "command": ["fail"]}}},)" +
      add("never"));
  auto r = execute(t, p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("main.star:5:9: plan.exec: Exec returned exit code '3'"),
            std::string::npos)
      << r.error().message();
  EXPECT_TRUE(t.services.count("a")) << "what ran stays, as Kurtosis keeps the enclave";
  EXPECT_FALSE(t.services.count("never"));
  // Once the command works, a rerun skips the service it already added.
  t.log.clear();
  const std::string fixed = plan_of(
      add("a") + "," +
      R"({"kind": "exec", "position": "main.star:5:9", "args": {"service_name": "a", "recipe": {"type": "exec", "command": ["ok"]}}},)" +
      add("never"));
  auto again = execute(t, fixed);
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->skipped, 1u);
  EXPECT_EQ(t.log.front(), "exec a ok");
}

TEST(StarlarkRun, ConnectionsBecomeOnePartitioningOfTheSubnetworks) {
  FakeTarget t;
  const std::string p =
      plan_of(add("a", "img:1", R"(, "subnetwork": "left")") + "," +
              add("b", "img:1", R"(, "subnetwork": "right")") + "," +
              R"({"kind": "set_connection", "position": "m:3:1", "args": {"subnetworks": ["left", "right"],
          "config": {"packet_loss_percentage": 100, "delay": null}}},)"
              R"({"kind": "set_connection", "position": "m:4:1", "args": {"subnetworks": null,
          "config": {"packet_loss_percentage": 10, "delay": {"distribution": "uniform", "ms": 50, "jitter_ms": 5}}}})");
  auto r = execute(t, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(t.partitionings.size(), 2u);
  const NetworkPartitioning& last = t.partitionings.back();
  EXPECT_EQ(last.partitions.at("left"), std::vector<std::string>{"a"});
  EXPECT_EQ(last.partitions.at("right"), std::vector<std::string>{"b"});
  ASSERT_EQ(last.connections.size(), 1u);
  EXPECT_TRUE(last.connections[0].connection.blocked);
  EXPECT_EQ(last.default_connection.loss_percent, 10);
  EXPECT_EQ(last.default_connection.delay, std::chrono::milliseconds(50));
  EXPECT_EQ(last.default_connection.jitter, std::chrono::milliseconds(5));
}

TEST(StarlarkRun, AddServicesIsAllOrNothing) {
  FakeTarget t;
  const std::string p = plan_of(R"({"kind": "add_services", "position": "m:1:1", "args": {"configs": {
      "x": {"image": "img:1"}, "y": {"image": "img:1"}, "z": {"image": "img:1"}}}})");
  auto r = execute(t, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(t.services.size(), 3u);
}

}  // namespace
