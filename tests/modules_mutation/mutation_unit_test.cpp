// The mutation module's logic without a container backend: params, target
// selection, the order of steps of a rolling change and of scaling, and the
// error that lists what was done when a step fails.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "mutation/mutation.hpp"
#include "support/fake_enclave.hpp"

namespace mutation = modhost::mutation;
using modhost::ErrorCode;
using modhost::testing::FakeClock;
using modhost::testing::FakeContext;

namespace {

mutation::Params params(const std::string& json) {
  return modhost::testing::parsed(mutation::parse_params, json);
}

std::string rejection(const std::string& json) {
  return modhost::testing::rejection_by(mutation::parse_params, json);
}

using modhost::testing::contains;

FakeContext enclave(std::initializer_list<const char*> names) {
  return modhost::testing::enclave_with(names);
}

}  // namespace

TEST(MutationParams, EveryBadInputIsOneClearError) {
  EXPECT_TRUE(contains(rejection("[]"), "JSON object"));
  EXPECT_TRUE(contains(rejection("{}"), "action is required"));
  EXPECT_TRUE(contains(rejection(R"({"action":"melt"})"), "action must be one of"));
  EXPECT_TRUE(contains(rejection(R"({"action":"exec","command":["true"]})"), "give the target services"));
  EXPECT_TRUE(contains(rejection(R"({"action":"exec","services":["a"]})"), "exec needs command"));
  EXPECT_TRUE(contains(rejection(R"({"action":"exec","services":["a"],"command":["x"],"image":"y"})"),
                       "action \"exec\" takes no 'image'"));
  EXPECT_TRUE(contains(rejection(R"({"action":"write_file","services":["a"],"path":"rel","content":"x"})"),
                       "absolute path"));
  EXPECT_TRUE(contains(rejection(R"({"action":"write_file","services":["a"],"path":"/x"})"),
                       "one of content and artifact"));
  EXPECT_TRUE(contains(
      rejection(R"({"action":"write_file","services":["a"],"path":"/x","content":"1","mode":"999"})"),
      "octal"));
  EXPECT_TRUE(contains(rejection(R"({"action":"update","services":["a"]})"), "at least one of env"));
  EXPECT_TRUE(contains(rejection(R"({"action":"update","services":["a"],"env":{"A":1}})"), "string or null"));
  EXPECT_TRUE(contains(rejection(R"({"action":"update","regex":"(","image":"x"})"), "not valid"));
  EXPECT_TRUE(contains(
      rejection(R"({"action":"update","services":["a"],"image":"x","wait":{"tcp":1,"exec":["true"]}})"),
      "exactly one of tcp, http and exec"));
  EXPECT_TRUE(contains(rejection(R"({"action":"scale","service":"a"})"), "needs replicas"));
  EXPECT_TRUE(contains(rejection(R"({"action":"scale","service":"a","replicas":0})"), "outside 1..100"));
  EXPECT_TRUE(
      contains(rejection(R"({"action":"scale","services":["a"],"replicas":2})"), "takes no 'services'"));
}

TEST(MutationRun, ExecRunsInEachTargetAndAnUnexpectedExitStopsTheRun) {
  FakeContext ctx = enclave({"a", "b", "c"});
  FakeClock clock;
  auto ok =
      mutation::run(ctx, params(R"({"action":"exec","regex":"^[ab]$","command":["touch","/x"]})"), clock);
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"exec a", "exec b"}));
  auto report = boost::json::parse(mutation::to_json(*ok));
  EXPECT_EQ(report.at("steps").at(0).at("exitCode"), 0);
  EXPECT_EQ(report.at("steps").at(0).at("output"), "out of a");

  ctx.calls.clear();
  ctx.exit_codes["b"] = 3;
  auto failed =
      mutation::run(ctx, params(R"({"action":"exec","services":["a","b","c"],"command":["x"]})"), clock);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().message(),
            "mutation stopped at exec of 'b': exited with code 3, expected 0; done before it: exec a");
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"exec a", "exec b"})) << "c is never touched";
}

TEST(MutationRun, UnknownTargetsChangeNothing) {
  FakeContext ctx = enclave({"a"});
  FakeClock clock;
  auto r = mutation::run(ctx, params(R"({"action":"exec","services":["a","ghost"],"command":["x"]})"), clock);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message(), "unknown service 'ghost'"));
  auto none = mutation::run(ctx, params(R"({"action":"exec","regex":"^zzz","command":["x"]})"), clock);
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.error().message(), "no service matches"));
  EXPECT_TRUE(ctx.mutating_calls().empty());
}

TEST(MutationRun, WriteFileInlineAndFromAnArtifactFetchedOnce) {
  FakeContext ctx = enclave({"a", "b"});
  FakeClock clock;
  ASSERT_TRUE(mutation::run(
                  ctx,
                  params(R"({"action":"write_file","services":["a"],"path":"/etc/x.conf","content":"k=v"})"),
                  clock)
                  .ok());
  EXPECT_EQ(ctx.written.at("a:/etc/x.conf"), "k=v");
  ctx.calls.clear();
  ASSERT_TRUE(mutation::run(ctx,
                            params(R"({"action":"write_file","regex":".","path":"/data","artifact":"seed"})"),
                            clock)
                  .ok());
  EXPECT_EQ(ctx.mutating_calls(),
            (std::vector<std::string>{"artifact seed", "copy a /data", "copy b /data"}));
}

TEST(MutationRun, UpdateReplacesOneServiceAtATimeWaitingForEach) {
  FakeContext ctx = enclave({"a", "b"});
  modhost::ServiceConfig a;
  a.name = "a";
  a.image = "img:1";
  a.env = {{"KEEP", "1"}, {"DROP", "x"}};
  a.cmd = {"serve"};
  ctx.configs["a"] = a;
  FakeClock clock;
  auto r = mutation::run(
      ctx,
      params(
          R"({"action":"update","services":["a","b"],"env":{"NEW":"2","DROP":null},"image":"img:2","wait":{"tcp":80}})"),
      clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(ctx.mutating_calls(),
            (std::vector<std::string>{"remove a", "add a", "ready a", "remove b", "add b", "ready b"}));
  const modhost::ServiceConfig& now = ctx.configs.at("a");
  EXPECT_EQ(now.image, "img:2");
  EXPECT_EQ(now.env, (std::map<std::string, std::string>{{"KEEP", "1"}, {"NEW", "2"}}));
  EXPECT_EQ(now.cmd, (std::vector<std::string>{"serve"}));
}

TEST(MutationRun, AFailedReplacementPutsTheOldConfigBackAndStops) {
  FakeContext ctx = enclave({"a", "b"});
  ctx.fail.insert("ready b");
  FakeClock clock;
  auto r = mutation::run(
      ctx, params(R"({"action":"update","regex":".","image":"img:2","wait":{"exec":["true"]}})"), clock);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(),
            "mutation stopped at ready of 'b': injected failure of ready b; done before it: remove a, "
            "replace a, ready a, "
            "remove b, replace b");

  FakeContext bad = enclave({"a"});
  bad.fail.insert("add a");
  auto once = mutation::run(bad, params(R"({"action":"update","services":["a"],"image":"nope"})"), clock);
  ASSERT_FALSE(once.ok());
  EXPECT_TRUE(contains(once.error().message(), "restoring the previous config failed"))
      << once.error().message();
}

TEST(MutationRun, ScaleAddsNumberedCopiesAndRemovesTheHighestFirst) {
  FakeContext ctx = enclave({"db", "web"});
  FakeClock clock;
  ASSERT_TRUE(mutation::run(ctx, params(R"({"action":"scale","service":"db","replicas":3})"), clock).ok());
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"add db-2", "add db-3"}));
  EXPECT_EQ(ctx.configs.at("db-3").labels.at(mutation::kCopyLabel), "db");

  ctx.calls.clear();
  ASSERT_TRUE(
      mutation::run(ctx, params(R"({"action":"scale","service":"db","replicas":4,"dry_run":true})"), clock)
          .ok());
  EXPECT_TRUE(ctx.mutating_calls().empty());

  auto down = mutation::run(ctx, params(R"({"action":"scale","service":"db","replicas":1})"), clock);
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"remove db-3", "remove db-2"}));
  EXPECT_FALSE(ctx.exists("db-2"));
  EXPECT_TRUE(ctx.exists("db"));

  auto ghost = mutation::run(ctx, params(R"({"action":"scale","service":"nope","replicas":2})"), clock);
  ASSERT_FALSE(ghost.ok());
  EXPECT_TRUE(contains(ghost.error().message(), "unknown service 'nope'"));
}
