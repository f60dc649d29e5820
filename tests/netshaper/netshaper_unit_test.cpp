// modhost-netshaper's logic without the kernel: the sampler's statistics, the
// release order, and what the config parser accepts and says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <vector>

#include "netshaper/config.hpp"
#include "netshaper/profile.hpp"
#include "netshaper/scheduler.hpp"

using namespace modhost::netshaper;
using namespace std::chrono_literals;

namespace {

constexpr int kSamples = 100'000;

double loss_rate(const Profile& p, std::uint64_t seed = 1) {
  Sampler s(p, seed);
  int lost = 0;
  for (int i = 0; i < kSamples; ++i) lost += s.sample().lost ? 1 : 0;
  return static_cast<double>(lost) / kSamples;
}

std::vector<double> delays_us(const Profile& p, int n = kSamples, std::uint64_t seed = 7) {
  Sampler s(p, seed);
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    Decision d = s.sample();
    EXPECT_FALSE(d.lost);
    out.push_back(static_cast<double>(d.delay.count()));
  }
  return out;
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }

double stddev(const std::vector<double>& v) {
  double m = mean(v), sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / (v.size() - 1));
}

double lag1_autocorrelation(const std::vector<double>& v) {
  double m = mean(v), num = 0, den = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    den += (v[i] - m) * (v[i] - m);
    if (i + 1 < v.size()) num += (v[i] - m) * (v[i + 1] - m);
  }
  return num / den;
}

Profile loss(double percent) {
  Profile p;
  p.loss_percent = percent;
  return p;
}

Profile jittered(Distribution d, std::int64_t delay, std::int64_t jitter, double correlation = 0) {
  Profile p;
  p.delay_us = delay;
  p.jitter_us = jitter;
  p.distribution = d;
  p.correlation_percent = correlation;
  return p;
}

}  // namespace

// --- Sampler ---

TEST(NetshaperSampler, LossRateMatchesTheProfile) {
  // 100k Bernoulli draws: the standard deviation of the rate is below 0.16%.
  EXPECT_NEAR(loss_rate(loss(10)), 0.10, 0.005);
  EXPECT_NEAR(loss_rate(loss(50)), 0.50, 0.007);
}

TEST(NetshaperSampler, NoLossLosesNothingAndFullLossLosesEverything) {
  EXPECT_EQ(loss_rate(loss(0)), 0.0);
  EXPECT_EQ(loss_rate(loss(100)), 1.0);
  Profile p = loss(100);
  p.correlation_percent = 90;  // correlated values stay below 1 too
  EXPECT_EQ(loss_rate(p), 1.0);
}

TEST(NetshaperSampler, WithoutJitterEveryPacketGetsTheDelay) {
  for (double d : delays_us(jittered(Distribution::uniform, 200'000, 0), 1000)) EXPECT_EQ(d, 200'000);
}

TEST(NetshaperSampler, UniformJitterStaysWithinBoundsAroundTheDelay) {
  auto v = delays_us(jittered(Distribution::uniform, 200'000, 20'000));
  for (double d : v) {
    ASSERT_GE(d, 180'000);
    ASSERT_LE(d, 220'000);
  }
  EXPECT_NEAR(mean(v), 200'000, 200);
  // Uniform over ±j: standard deviation j / sqrt(3).
  EXPECT_NEAR(stddev(v), 20'000 / std::sqrt(3.0), 300);
}

TEST(NetshaperSampler, NormalJitterHasTheJitterAsStandardDeviation) {
  auto v = delays_us(jittered(Distribution::normal, 200'000, 20'000));
  EXPECT_NEAR(mean(v), 200'000, 300);
  EXPECT_NEAR(stddev(v), 20'000, 400);
  // About 68% within one standard deviation.
  double within = static_cast<double>(std::count_if(
                      v.begin(), v.end(), [](double d) { return std::abs(d - 200'000) <= 20'000; })) /
                  v.size();
  EXPECT_NEAR(within, 0.683, 0.01);
}

TEST(NetshaperSampler, CorrelatedNormalJitterKeepsItsSpread) {
  auto v = delays_us(jittered(Distribution::normal, 200'000, 20'000, 50));
  EXPECT_NEAR(stddev(v), 20'000, 600);
  EXPECT_NEAR(lag1_autocorrelation(v), 0.5, 0.02);
}

TEST(NetshaperSampler, DelayNeverGoesBelowZero) {
  for (double d : delays_us(jittered(Distribution::normal, 1000, 50'000), 10'000)) ASSERT_GE(d, 0);
}

TEST(NetshaperSampler, SameSeedSameSequenceOtherSeedOtherSequence) {
  Profile p = jittered(Distribution::normal, 100'000, 30'000, 25);
  p.loss_percent = 20;
  Sampler a(p, 42), b(p, 42), c(p, 43);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    Decision da = a.sample(), db = b.sample(), dc = c.sample();
    ASSERT_EQ(da.lost, db.lost) << i;
    ASSERT_EQ(da.delay, db.delay) << i;
    differ += (da.lost != dc.lost || da.delay != dc.delay) ? 1 : 0;
  }
  EXPECT_GT(differ, 500);
}

TEST(NetshaperSampler, CorrelationRaisesLagOneAutocorrelation) {
  double none = lag1_autocorrelation(delays_us(jittered(Distribution::uniform, 100'000, 50'000, 0)));
  double some = lag1_autocorrelation(delays_us(jittered(Distribution::uniform, 100'000, 50'000, 50)));
  double much = lag1_autocorrelation(delays_us(jittered(Distribution::uniform, 100'000, 50'000, 90)));
  EXPECT_NEAR(none, 0.0, 0.02);
  // u = Φ(z), z with lag-1 correlation c: u's is (6/π) asin(c/2), a little below c.
  EXPECT_NEAR(some, 6 / std::numbers::pi * std::asin(0.25), 0.02);  // 0.483
  EXPECT_NEAR(much, 6 / std::numbers::pi * std::asin(0.45), 0.02);  // 0.891
}

TEST(NetshaperSampler, CorrelationKeepsTheLossRateAndTheJitterSpread) {
  // netem's u' = c u + (1 - c) fresh would lose 1.75% here, and 0.1% at 50%.
  for (double c : {25.0, 50.0, 90.0}) {
    Profile p = loss(10);
    p.correlation_percent = c;
    // Bursts make the rate noisier than independent draws: wider tolerance.
    EXPECT_NEAR(loss_rate(p), 0.10, c < 90 ? 0.01 : 0.03) << "correlation " << c;
  }
  auto v = delays_us(jittered(Distribution::uniform, 200'000, 20'000, 50));
  for (double d : v) {
    ASSERT_GE(d, 180'000);
    ASSERT_LE(d, 220'000);
  }
  EXPECT_NEAR(mean(v), 200'000, 400);
  EXPECT_NEAR(stddev(v), 20'000 / std::sqrt(3.0), 400);
}

TEST(NetshaperSampler, CorrelatedLossComesInBursts) {
  // Runs of losses grow longer with correlation.
  auto mean_burst = [](double correlation) {
    Profile p = loss(50);
    p.correlation_percent = correlation;
    Sampler s(p, 3);
    int bursts = 0, lost = 0;
    bool previous = false;
    for (int i = 0; i < kSamples; ++i) {
      bool l = s.sample().lost;
      lost += l ? 1 : 0;
      bursts += (l && !previous) ? 1 : 0;
      previous = l;
    }
    return static_cast<double>(lost) / bursts;
  };
  EXPECT_NEAR(mean_burst(0), 2.0, 0.05);  // geometric, p = 0.5
  EXPECT_GT(mean_burst(75), 3.0);
}

TEST(NetshaperSampler, ANewProfileKeepsTheRandomState) {
  // As `tc qdisc change`: no reseeding, the correlated sequence goes on.
  Profile p = jittered(Distribution::uniform, 1000, 500, 60);
  p.loss_percent = 20;
  Sampler a(p, 5), b(p, 5);
  for (int i = 0; i < 50; ++i) {
    a.sample();
    b.sample();
  }
  a.set_profile(p);
  for (int i = 0; i < 100; ++i) {
    Decision da = a.sample(), db = b.sample();
    ASSERT_EQ(da.lost, db.lost);
    ASSERT_EQ(da.delay, db.delay);
  }
  Profile q = p;
  q.delay_us = 50'000;
  a.set_profile(q);
  b.set_profile(q);
  EXPECT_EQ(a.profile(), q);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.sample().delay, b.sample().delay);
}

TEST(NetshaperSampler, QueueSeedsDiffer) {
  EXPECT_NE(queue_seed(42, 0, 1), queue_seed(42, 0, 2));
  EXPECT_NE(queue_seed(42, 0, 1), queue_seed(42, 1, 1));
  EXPECT_NE(queue_seed(42, 0, 1), queue_seed(43, 0, 1));
  EXPECT_EQ(queue_seed(42, 3, 19785), queue_seed(42, 3, 19785));
}

// --- ReleaseScheduler ---

TEST(NetshaperScheduler, ReleasesInTimeOrderWhateverTheArrivalOrder) {
  ReleaseScheduler s;
  auto t0 = Clock::now();
  EXPECT_FALSE(s.next_release());
  s.push({t0 + 30ms, 1, 5, 3});
  s.push({t0 + 10ms, 2, 5, 1});
  s.push({t0 + 20ms, 1, 6, 2});
  s.push({t0 + 40ms, 1, 5, 4});
  EXPECT_EQ(s.next_release(), t0 + 10ms);
  EXPECT_TRUE(s.pop_due(t0).empty());
  auto due = s.pop_due(t0 + 30ms);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].packet_id, 1u);
  EXPECT_EQ(due[0].namespace_key, 2u);
  EXPECT_EQ(due[1].packet_id, 2u);
  EXPECT_EQ(due[1].queue, 6);
  EXPECT_EQ(due[2].packet_id, 3u);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.next_release(), t0 + 40ms);
}

TEST(NetshaperScheduler, TakeIfRemovesOnlyTheChosenAndKeepsTheOrder) {
  ReleaseScheduler s;
  auto t0 = Clock::now();
  for (std::uint32_t i = 0; i < 100; ++i) {
    s.push({t0 + std::chrono::milliseconds((i * 37) % 100), i % 3, static_cast<std::uint16_t>(i % 2), i});
  }
  auto taken = s.take_if([](const Held& h) { return h.namespace_key == 1; });
  EXPECT_EQ(taken.size(), 33u);
  for (const auto& h : taken) EXPECT_EQ(h.namespace_key, 1u);
  auto rest = s.pop_due(t0 + 1s);
  ASSERT_EQ(rest.size(), 67u);
  for (std::size_t i = 1; i < rest.size(); ++i) EXPECT_LE(rest[i - 1].release, rest[i].release);
  for (const auto& h : rest) EXPECT_NE(h.namespace_key, 1u);
  EXPECT_TRUE(s.empty());
}

// --- Config ---

TEST(NetshaperConfig, ParsesTheFullForm) {
  auto r = parse_config(R"({"generation": 3, "seed": 42, "namespaces": [
      {"pid": 1234, "queues": [{"num": 19785, "delay_us": 200000, "jitter_us": 20000,
                                "correlation": 25.0, "distribution": "normal", "loss": 10}]},
      {"pid": 99, "queues": []}]})");
  ASSERT_TRUE(r.config) << r.error;
  const Config& c = *r.config;
  EXPECT_EQ(c.generation, 3u);
  EXPECT_EQ(c.seed, 42u);
  ASSERT_EQ(c.namespaces.size(), 2u);
  EXPECT_EQ(c.namespaces[0].pid, 1234);
  ASSERT_EQ(c.namespaces[0].queues.size(), 1u);
  const auto& q = c.namespaces[0].queues[0];
  EXPECT_EQ(q.num, 19785);
  EXPECT_EQ(q.profile.delay_us, 200000);
  EXPECT_EQ(q.profile.jitter_us, 20000);
  EXPECT_EQ(q.profile.correlation_percent, 25.0);
  EXPECT_EQ(q.profile.distribution, Distribution::normal);
  EXPECT_EQ(q.profile.loss_percent, 10.0);
  EXPECT_TRUE(c.namespaces[1].queues.empty());
}

TEST(NetshaperConfig, DefaultsForWhatIsLeftOut) {
  auto r = parse_config(R"({"generation": 0, "namespaces": [{"pid": 1, "queues": [{"num": 0}]}]})");
  ASSERT_TRUE(r.config) << r.error;
  EXPECT_FALSE(r.config->seed);
  EXPECT_EQ(r.config->namespaces[0].queues[0].profile, Profile{});
  auto empty = parse_config(R"({"generation": 1, "namespaces": []})");
  ASSERT_TRUE(empty.config) << empty.error;
  EXPECT_TRUE(empty.config->namespaces.empty());
}

struct BadConfig {
  const char* json;
  const char* error;
};

class NetshaperConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(NetshaperConfigErrors, SayWhatAndWhere) {
  auto r = parse_config(GetParam().json);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.error, GetParam().error);
}

#define NS(queue) R"({"generation": 1, "namespaces": [{"pid": 10, "queues": [)" queue "]}]}"

INSTANTIATE_TEST_SUITE_P(
    NetshaperConfig, NetshaperConfigErrors,
    ::testing::Values(
        BadConfig{"", "not valid JSON at line 1 column 1: incomplete JSON"},
        BadConfig{"{\"generation\": 1,\n \"namespaces\": [}",
                  "not valid JSON at line 2 column 17: syntax error"},
        BadConfig{R"({"generation": 1, "namespaces": []} x)",
                  "not valid JSON at line 1 column 37: extra data"},
        BadConfig{"[]", "config: must be a JSON object"},
        BadConfig{R"({"namespaces": []})", "generation: missing"},
        BadConfig{R"({"generation": -1, "namespaces": []})", "generation: must not be negative, got -1"},
        BadConfig{R"({"generation": "3", "namespaces": []})", "generation: must be an integer, got \"3\""},
        BadConfig{R"({"generation": 1})", "namespaces: missing"},
        BadConfig{R"({"generation": 1, "namespaces": {}})", "namespaces: must be an array"},
        BadConfig{R"({"generation": 1, "namespaces": [], "extra": 1})",
                  "config: unknown key 'extra' (known: generation, seed, namespaces)"},
        BadConfig{R"({"generation": 1, "namespaces": [{"queues": []}]})", "namespaces[0].pid: missing"},
        BadConfig{R"({"generation": 1, "namespaces": [{"pid": 0, "queues": []}]})",
                  "namespaces[0].pid: must be between 1 and 2147483647, got 0"},
        BadConfig{R"({"generation": 1, "namespaces": [{"pid": 10}]})", "namespaces[0].queues: missing"},
        BadConfig{
            R"({"generation": 1, "namespaces": [{"pid": 10, "queues": []}, {"pid": 10, "queues": []}]})",
            "namespaces[1].pid: pid 10 twice"},
        BadConfig{NS(R"({"delay_us": 5})"), "namespaces[0].queues[0].num: missing"},
        BadConfig{NS(R"({"num": 65536})"),
                  "namespaces[0].queues[0].num: must be between 0 and 65535, got 65536"},
        BadConfig{NS(R"({"num": -1})"), "namespaces[0].queues[0].num: must be between 0 and 65535, got -1"},
        BadConfig{NS(R"({"num": 1.5})"), "namespaces[0].queues[0].num: must be an integer, got 1.5"},
        BadConfig{NS(R"({"num": 1}, {"num": 1})"), "namespaces[0].queues[1].num: queue 1 twice"},
        BadConfig{NS(R"({"num": 1, "delay_us": -5})"),
                  "namespaces[0].queues[0].delay_us: must be between 0 and 3600000000, got -5"},
        BadConfig{NS(R"({"num": 1, "jitter_us": 3600000001})"),
                  "namespaces[0].queues[0].jitter_us: must be between 0 and 3600000000, got 3600000001"},
        BadConfig{NS(R"({"num": 1, "loss": 100.5})"),
                  "namespaces[0].queues[0].loss: must be between 0 and 100, got 100.5"},
        BadConfig{NS(R"({"num": 1, "loss": -1})"),
                  "namespaces[0].queues[0].loss: must be between 0 and 100, got -1"},
        BadConfig{NS(R"({"num": 1, "correlation": "high"})"),
                  "namespaces[0].queues[0].correlation: must be a number, got \"high\""},
        BadConfig{
            NS(R"({"num": 1, "distribution": "pareto"})"),
            "namespaces[0].queues[0].distribution: unknown distribution \"pareto\" (known: \"uniform\", "
            "\"normal\")"},
        BadConfig{
            NS(R"({"num": 1, "delay_ms": 5})"),
            "namespaces[0].queues[0]: unknown key 'delay_ms' (known: num, delay_us, jitter_us, correlation, "
            "distribution, loss)"}));

TEST(NetshaperConfig, LoadNamesTheFile) {
  auto r = load_config("/nonexistent/netshaper.json");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.error, "/nonexistent/netshaper.json: cannot open: No such file or directory");
}
