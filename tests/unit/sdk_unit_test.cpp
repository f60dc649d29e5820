// The SDK's typed options turn into params the built-in modules accept and
// read back as the same thing.
#include <gtest/gtest.h>

#include "chaos/chaos.hpp"
#include "modhost/client.hpp"
#include "mutation/mutation.hpp"
#include "partition/partition.hpp"

using namespace std::chrono_literals;

TEST(SdkOptions, ChaosOptionsAreParamsTheChaosModuleAccepts) {
  modhost::ChaosOptions o;
  o.action = "pause";
  o.regex = "^db";
  o.labels = {{"team", "qa"}};
  o.pause_seconds = 1.5;
  o.count = 2;
  o.seed = 42;
  o.dry_run = true;
  auto p = modhost::chaos::parse_params(o.to_json());
  ASSERT_TRUE(p.ok()) << p.error().message() << " in " << o.to_json();
  EXPECT_EQ(p->action, modhost::chaos::Action::pause);
  EXPECT_EQ(p->regex_text, "^db");
  EXPECT_EQ(p->labels.at("team"), "qa");
  EXPECT_EQ(p->pause, 1500ms);
  EXPECT_EQ(p->count, 2u);
  EXPECT_EQ(p->seed, 42u);
  EXPECT_TRUE(p->dry_run);
}

TEST(SdkOptions, PartitionOptionsReadBackAsTheSamePlan) {
  modhost::PartitionOptions o;
  o.partitions = {{"a", {"s1", "s2"}}, {"b", {"s3"}}};
  modhost::Connection slow;
  slow.delay = 250ms;
  slow.jitter = 10ms;
  slow.loss_percent = 2.5;
  slow.correlation_percent = 25;
  slow.distribution = modhost::Connection::Distribution::normal;
  slow.rate_bytes_per_second = 125000;
  o.connections = {{"a", "b", slow}};
  o.default_connection.blocked = true;
  o.duration_seconds = 30;
  auto p = modhost::partition::parse_params(o.to_json());
  ASSERT_TRUE(p.ok()) << p.error().message() << " in " << o.to_json();
  EXPECT_EQ(p->plan.partitions, o.partitions);
  ASSERT_EQ(p->plan.connections.size(), 1u);
  EXPECT_EQ(p->plan.connections[0].connection, slow);
  EXPECT_TRUE(p->plan.default_connection.blocked);
  EXPECT_EQ(p->duration, 30s);
}

TEST(SdkOptions, MutationOptionsAreParamsTheMutationModuleAccepts) {
  for (const auto& o : {modhost::MutationOptions::exec({"a"}, {"sync"}),
                        modhost::MutationOptions::write_file({"a"}, "/etc/x", "k=v"),
                        modhost::MutationOptions::set_env({"a", "b"}, {{"MODE", "fast"}}),
                        modhost::MutationOptions::scale("db", 3)}) {
    auto p = modhost::mutation::parse_params(o.json);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message()) << " in " << o.json;
  }
  auto scale = modhost::mutation::parse_params(modhost::MutationOptions::scale("db", 3).json);
  EXPECT_EQ(scale->replicas, 3);
}
