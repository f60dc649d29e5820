// The partition module's logic without a container backend (params, plan,
// run, report, against a fake context and clock), and the rules the engine
// compiles from a plan for each service's namespace.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "engine/partition_rules.hpp"
#include "partition/partition.hpp"
#include "support/fake_enclave.hpp"

namespace partition = modhost::partition;
namespace rules = modhost::engine::partition;
using modhost::Connection;
using modhost::ErrorCode;
using modhost::NetworkPartitioning;
using modhost::testing::FakeClock;
using modhost::testing::FakeContext;
using std::chrono::milliseconds;

namespace {

partition::Params params(const std::string& json) {
  return modhost::testing::parsed(partition::parse_params, json);
}

std::string rejection(const std::string& json) {
  return modhost::testing::rejection_by(partition::parse_params, json);
}

using modhost::testing::contains;

FakeContext enclave(std::initializer_list<const char*> names) {
  return modhost::testing::enclave_with(names);
}

}  // namespace

// --- Params ---

TEST(PartitionParams, ParsesPartitionsConnectionsAndDefault) {
  auto p = params(R"({"partitions":{"a":["s1","s2"],"b":["s3"]},
                      "connections":[{"between":["a","b"],"loss":12.5,"delay_ms":100,"jitter_ms":10,
                                      "correlation":25,"distribution":"normal","rate":"1mbit"}],
                      "default":{"blocked":true},"duration_seconds":2.5})");
  ASSERT_EQ(p.plan.partitions.size(), 2u);
  EXPECT_EQ(p.plan.partitions.at("a"), (std::vector<std::string>{"s1", "s2"}));
  ASSERT_EQ(p.plan.connections.size(), 1u);
  const Connection& c = p.plan.connections[0].connection;
  EXPECT_DOUBLE_EQ(c.loss_percent, 12.5);
  EXPECT_EQ(c.delay, std::chrono::microseconds(100'000));
  EXPECT_EQ(c.jitter, std::chrono::microseconds(10'000));
  EXPECT_DOUBLE_EQ(c.correlation_percent, 25);
  EXPECT_EQ(c.distribution, Connection::Distribution::normal);
  EXPECT_EQ(c.rate_bytes_per_second, 125'000u);
  EXPECT_TRUE(p.plan.default_connection.blocked);
  EXPECT_EQ(p.duration, milliseconds(2500));
  EXPECT_TRUE(p.plan.temporary) << "a run with a duration holds its partitioning";
  EXPECT_FALSE(params(R"({"partitions":{"a":["x"]},"default":{"blocked":true}})").plan.temporary);
}

TEST(PartitionParams, RatesInBitsAndBytes) {
  EXPECT_EQ(partition::parse_rate("100kbit"), 12'500u);
  EXPECT_EQ(partition::parse_rate("1Gbit"), 125'000'000u);
  EXPECT_EQ(partition::parse_rate("64kbps"), 64'000u);
  EXPECT_EQ(partition::parse_rate("7bps"), 7u);
  EXPECT_FALSE(partition::parse_rate("1"));
  EXPECT_FALSE(partition::parse_rate("fast"));
  EXPECT_FALSE(partition::parse_rate("0mbit"));
  EXPECT_FALSE(partition::parse_rate("4bit")) << "under a byte per second";
}

TEST(PartitionParams, EveryBadInputIsOneClearError) {
  EXPECT_TRUE(contains(rejection("[1]"), "must be a JSON object"));
  EXPECT_TRUE(contains(rejection("{"), "not valid JSON"));
  EXPECT_TRUE(contains(rejection(R"({"action":"explode"})"), "action must be"));
  EXPECT_TRUE(contains(rejection(R"({"partitons":{}})"), "unknown key 'partitons'"));
  EXPECT_TRUE(contains(rejection(R"({})"), "partitions is missing"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"],"b":["x"]},"default":{"blocked":true}})"),
                       "service 'x' is in two partitions"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"others":["x"]}})"), "reserved"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a b":["x"]}})"), "not valid"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":[]}})"), "has no services"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","b"],"blocked":true}]})"),
      "unknown partition 'b'"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","a"],"blocked":true}]})"),
      "to itself"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],"loss":101}]})"),
      "outside 0..100"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],"loss":-1}]})"),
      "outside 0..100"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],"delay_ms":-5}]})"),
      "must not be negative"));
  EXPECT_TRUE(contains(
      rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],"jitter_ms":5}]})"),
      "jitter needs a delay"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],
                                     "blocked":true,"loss":5}]})"),
                       "takes no loss"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],
                                     "distribution":"pareto"}]})"),
                       "\"uniform\" or \"normal\""));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"]},"connections":[{"between":["a","others"],
                                     "wobble":1}]})"),
                       "unknown key 'connections[0].wobble'"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"]},"connections":[
                                     {"between":["a","others"],"blocked":true},
                                     {"between":["others","a"],"loss":1}]})"),
                       "given twice"));
  EXPECT_TRUE(contains(rejection(R"({"action":"heal","partitions":{"a":["x"]}})"), "takes no partitions"));
  EXPECT_TRUE(contains(rejection(R"({"partitions":{"a":["x"]},"duration_seconds":0})"), "above 0"));
}

// --- Run ---

TEST(PartitionRun, UnknownServiceIsRejectedBeforeAnythingChanges) {
  FakeContext ctx = enclave({"s1", "s2"});
  FakeClock clock;
  auto r = partition::run(ctx, params(R"({"partitions":{"a":["s1","ghost"]},"default":{"blocked":true}})"),
                          clock, [] { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message(), "unknown service 'ghost'")) << r.error().message();
  EXPECT_TRUE(ctx.plans.empty());
}

TEST(PartitionRun, NothingToShapeIsAnErrorAndNoAction) {
  FakeContext ctx = enclave({"s1", "s2"});
  FakeClock clock;
  auto r = partition::run(ctx, params(R"({"partitions":{"a":["s1"]}})"), clock, [] { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message(), "nothing to shape")) << r.error().message();
  EXPECT_TRUE(ctx.plans.empty());
}

TEST(PartitionRun, AppliesOnceAndReportsPartitionsPairsAndEvents) {
  FakeContext ctx = enclave({"s1", "s2", "s3", "s4"});
  FakeClock clock;
  auto r = partition::run(
      ctx,
      params(R"({"partitions":{"a":["s1"],"b":["s2"]},"connections":[{"between":["a","b"],"delay_ms":50}],
                      "default":{"blocked":true}})"),
      clock, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(ctx.plans.size(), 1u);
  EXPECT_FALSE(ctx.plans[0].temporary);
  auto report = boost::json::parse(partition::to_json(*r)).as_object();
  EXPECT_EQ(report.at("action"), "apply");
  EXPECT_EQ(report.at("partitions").at("others"), (boost::json::array{"s3", "s4"}));
  // a-b delayed, a-others and b-others blocked by the default.
  ASSERT_EQ(report.at("connections").as_array().size(), 3u);
  EXPECT_EQ(report.at("connections").at(0).at("between"), (boost::json::array{"a", "b"}));
  EXPECT_EQ(report.at("connections").at(0).at("delay_ms"), 50);
  EXPECT_EQ(report.at("connections").at(1).at("blocked"), true);
  ASSERT_EQ(report.at("events").as_array().size(), 1u);
  EXPECT_EQ(report.at("events").at(0).at("event"), "applied");
  EXPECT_EQ(report.at("events").at(0).at("time"), "2023-11-14T22:13:20.000Z");
}

TEST(PartitionRun, DurationHealsWhenItEnds) {
  FakeContext ctx = enclave({"s1", "s2"});
  FakeClock clock;
  auto r =
      partition::run(ctx, params(R"({"partitions":{"a":["s1"]},"default":{"loss":10},"duration_seconds":3})"),
                     clock, [] { return false; });
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"repartition", "heal"}));
  EXPECT_TRUE(ctx.plans[0].temporary);
  EXPECT_EQ(clock.elapsed, milliseconds(3000));
  EXPECT_LE(clock.longest_sleep, modhost::modules::kPollStep);
  EXPECT_EQ(r->events.back().what, "healed");
  EXPECT_EQ(r->events.back().reason, "duration");
  EXPECT_FALSE(r->cancelled);
}

TEST(PartitionRun, CancellationHealsAtOnce) {
  FakeContext ctx = enclave({"s1", "s2"});
  FakeClock clock;
  clock.cancel_at = milliseconds(1200);
  auto r = partition::run(
      ctx, params(R"({"partitions":{"a":["s1"]},"default":{"blocked":true},"duration_seconds":600})"), clock,
      [&] { return clock.cancelled(); });
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"repartition", "heal"}));
  EXPECT_TRUE(r->cancelled);
  EXPECT_EQ(r->events.back().reason, "cancelled");
  EXPECT_LT(clock.elapsed, milliseconds(1500));
}

TEST(PartitionRun, DryRunAndHeal) {
  FakeContext ctx = enclave({"s1", "s2"});
  FakeClock clock;
  auto dry =
      partition::run(ctx, params(R"({"partitions":{"a":["s1"]},"default":{"blocked":true},"dry_run":true})"),
                     clock, [] { return false; });
  ASSERT_TRUE(dry.ok());
  EXPECT_TRUE(ctx.plans.empty());
  EXPECT_EQ(dry->events.at(0).what, "planned");
  EXPECT_EQ(dry->pairs.size(), 1u);

  auto healed = partition::run(ctx, params(R"({"action":"heal"})"), clock, [] { return false; });
  ASSERT_TRUE(healed.ok());
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"heal"}));
}

TEST(PartitionRun, AFailedApplyIsTheRunsError) {
  FakeContext ctx = enclave({"s1", "s2"});
  ctx.fail.insert("repartition");
  FakeClock clock;
  auto r = partition::run(ctx, params(R"({"partitions":{"a":["s1"]},"default":{"blocked":true}})"), clock,
                          [] { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message(), "injected failure"));
}

// --- Rules for each namespace ---

namespace {

std::vector<rules::Endpoint> endpoints() {
  return {{"s1", "10.1.0.2"}, {"s2", "10.1.0.3"}, {"s3", "10.1.0.4"}, {"s4", "10.1.0.5"}};
}

NetworkPartitioning plan(const std::string& json) { return params(json).plan; }

}  // namespace

TEST(PartitionRules, BlockedPairsDropOnlyTowardTheOtherPartition) {
  auto ns = rules::compile(plan(R"({"partitions":{"a":["s1","s2"],"b":["s3","s4"]},
                                    "connections":[{"between":["a","b"],"blocked":true}]})"),
                           endpoints());
  ASSERT_EQ(ns.size(), 4u);
  EXPECT_EQ(ns[0].partition, "a");
  ASSERT_EQ(ns[0].rules.size(), 2u) << "s1 shapes what comes from s3 and s4, never from s2";
  EXPECT_EQ(ns[0].rules[0].ip, "10.1.0.4");
  EXPECT_EQ(ns[0].rules[1].ip, "10.1.0.5");
  EXPECT_TRUE(ns[0].queues.empty());
  std::string text = rules::render_restore(ns[0], {});
  EXPECT_TRUE(contains(text, ":MODHOST-PARTITION - [0:0]\n"));
  EXPECT_TRUE(contains(text, "-A MODHOST-PARTITION -s 10.1.0.4/32 -j DROP\n"));
  EXPECT_TRUE(contains(text, "-I INPUT 1 -j MODHOST-PARTITION\n"));
  EXPECT_FALSE(contains(text, "10.1.0.3"));
  EXPECT_EQ(text.substr(text.size() - 7), "COMMIT\n");
  // Installed before: the jump is not added twice.
  EXPECT_FALSE(contains(rules::render_restore(ns[0], {true, true}), "-I INPUT"));
}

TEST(PartitionRules, DegradedPairsGoToOneShaperQueuePerPeerPartition) {
  auto ns = rules::compile(plan(R"({"partitions":{"a":["s1"],"b":["s2"],"c":["s3"]},
                                    "connections":[{"between":["a","b"],"loss":25},
                                                   {"between":["a","c"],"delay_ms":200,"loss":5},
                                                   {"between":["a","others"],"blocked":true}]})"),
                           endpoints());
  const rules::NamespaceRules& s1 = ns[0];
  ASSERT_EQ(s1.rules.size(), 3u);
  std::string text = rules::render_restore(s1, {});
  // Queues numbered by peer partition name: b, then c.
  EXPECT_TRUE(contains(text, "-s 10.1.0.3/32 -j NFQUEUE --queue-num 19785 --queue-bypass\n")) << text;
  EXPECT_TRUE(contains(text, "-s 10.1.0.4/32 -j NFQUEUE --queue-num 19786 --queue-bypass\n")) << text;
  EXPECT_TRUE(contains(text, "-s 10.1.0.5/32 -j DROP\n")) << text;
  ASSERT_EQ(s1.queues.size(), 2u);
  EXPECT_DOUBLE_EQ(s1.queues.at(19785).loss_percent, 25);
  EXPECT_EQ(s1.queues.at(19786).delay, std::chrono::microseconds(200'000));
  // b receiving from a: the same loss, the other direction.
  EXPECT_TRUE(contains(rules::render_restore(ns[1], {}), "-s 10.1.0.2/32 -j NFQUEUE --queue-num 19785"));
  // b and c are allowed to each other: nothing between them.
  EXPECT_FALSE(contains(rules::render_restore(ns[1], {}), "10.1.0.4"));

  // A new loss value changes the shaper's table, not a single rule.
  auto changed = rules::compile(plan(R"({"partitions":{"a":["s1"],"b":["s2"],"c":["s3"]},
                                         "connections":[{"between":["a","b"],"loss":60},
                                                        {"between":["a","c"],"delay_ms":200,"loss":5},
                                                        {"between":["a","others"],"blocked":true}]})"),
                                endpoints());
  for (std::size_t i = 0; i < ns.size(); ++i)
    EXPECT_EQ(rules::chain_rules(changed[i]), rules::chain_rules(ns[i]));
  EXPECT_DOUBLE_EQ(changed[0].queues.at(19785).loss_percent, 60);
}

TEST(PartitionRules, RateIsPolicedBeforeOtherEffects) {
  auto ns = rules::compile(
      plan(
          R"({"partitions":{"a":["s1"]},"connections":[{"between":["a","others"],"rate":"1mbit","delay_ms":10}]})"),
      endpoints());
  std::string text = rules::render_restore(ns[0], {});
  auto police = text.find("-s 10.1.0.3/32 -m hashlimit --hashlimit-above 125000b/s");
  auto queue = text.find("-s 10.1.0.3/32 -j NFQUEUE");
  ASSERT_NE(police, std::string::npos) << text;
  ASSERT_NE(queue, std::string::npos) << text;
  EXPECT_LT(police, queue);
  EXPECT_TRUE(contains(text, "--hashlimit-name mh0a010003 "));
}

TEST(PartitionRules, HealRemovesOnlyWhatIsInstalled) {
  rules::NamespaceRules none;
  EXPECT_EQ(rules::render_restore(none, {}), "");
  EXPECT_EQ(rules::render_restore(none, {true, true}),
            "*filter\n-D INPUT -j MODHOST-PARTITION\n-F MODHOST-PARTITION\n-X MODHOST-PARTITION\nCOMMIT\n");
  EXPECT_EQ(rules::render_restore(none, {true, false}),
            "*filter\n-F MODHOST-PARTITION\n-X MODHOST-PARTITION\nCOMMIT\n");
}

TEST(PartitionRules, ReadsWhatIptablesSaveShows) {
  auto i = rules::parse_iptables_save(
      "*filter\n:INPUT ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:MODHOST-PARTITION - [0:0]\n"
      "-A INPUT -j MODHOST-PARTITION\n-A MODHOST-PARTITION -s 10.1.0.4/32 -j DROP\nCOMMIT\n");
  EXPECT_TRUE(i.chain);
  EXPECT_TRUE(i.jump);
  auto other =
      rules::parse_iptables_save("*filter\n:MODHOST-PARTITIONX - [0:0]\n-A INPUT -j MODHOST-PARTITIONX\n");
  EXPECT_FALSE(other.chain);
  EXPECT_FALSE(other.jump);
}

TEST(PartitionRules, AnUnlistedPairTakesTheDefaultAndEmptyPlansShapeNothing) {
  auto ns = rules::compile(plan(R"({"partitions":{"a":["s1"],"b":["s2"]},"default":{"blocked":true}})"),
                           endpoints());
  EXPECT_EQ(ns[0].rules.size(), 3u) << "s1 is blocked from b and from others";
  EXPECT_EQ(ns[2].rules.size(), 2u) << "s3 (others) is blocked from a and b, not from s4";
  for (const auto& n : rules::compile(NetworkPartitioning{}, endpoints())) EXPECT_TRUE(n.rules.empty());
  EXPECT_TRUE(NetworkPartitioning{}.empty());
}
