// The chaos module's logic without a container backend: params, selection,
// schedule, restoration and the report, against a hand-written fake
// EnclaveContext and a fake clock.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <csignal>
#include <regex>
#include <set>

#include "chaos/chaos.hpp"
#include "support/fake_enclave.hpp"

namespace chaos = modhost::chaos;
using modhost::Error;
using modhost::ErrorCode;
using modhost::Result;
using modhost::ServiceInfo;
using modhost::ServiceStatus;
using modhost::Status;
using std::chrono::milliseconds;

namespace {

using modhost::testing::FakeClock;
using modhost::testing::FakeContext;

chaos::Params params(const std::string& json) {
  auto p = chaos::parse_params(json);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
  return p.ok() ? std::move(p).value() : chaos::Params{};
}

// The error message of invalid params (and checks the code).
std::string rejection(const std::string& json) {
  auto p = chaos::parse_params(json);
  if (p.ok()) return "<accepted>";
  EXPECT_EQ(p.error().code(), ErrorCode::invalid_argument) << p.error().message();
  return p.error().message();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

Result<chaos::Report> run(FakeContext& ctx, const std::string& json, FakeClock& clock) {
  chaos::Params p = params(json);
  std::function<bool()> cancelled = [&clock] { return clock.cancelled(); };
  return chaos::run(ctx, p, clock, cancelled);
}

std::vector<std::string> services_acted_on(const chaos::Report& r) {
  std::vector<std::string> out;
  for (const auto& a : r.actions) out.push_back(a.service);
  return out;
}

}  // namespace

// --- Params ---

TEST(ChaosParams, Defaults) {
  chaos::Params p = params(R"({"action":"kill","services":["db"]})");
  EXPECT_EQ(p.action, chaos::Action::kill);
  EXPECT_EQ(p.signal, SIGKILL);
  EXPECT_FALSE(p.interval);
  EXPECT_FALSE(p.seed);
  EXPECT_FALSE(p.dry_run);
  EXPECT_EQ(params(R"({"action":"stop","regex":"x"})").grace_seconds, 10);
  EXPECT_EQ(params(R"({"action":"pause","regex":"x"})").pause, milliseconds(10'000));
}

TEST(ChaosParams, AllKeys) {
  chaos::Params p = params(
      R"({"action":"pause","pause_seconds":1.5,"services":["b","a","b"],"regex":"^[ab]$","labels":{"team":"qa"},
          "percentage":50,"interval_seconds":2,"duration_seconds":10,"repeat":3,"seed":18446744073709551615,
          "dry_run":true})");
  EXPECT_EQ(p.action, chaos::Action::pause);
  EXPECT_EQ(p.pause, milliseconds(1500));
  EXPECT_EQ(p.services, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p.regex_text, "^[ab]$");
  EXPECT_EQ(p.labels.at("team"), "qa");
  EXPECT_EQ(p.percentage, 50.0);
  EXPECT_EQ(p.interval, milliseconds(2000));
  EXPECT_EQ(p.duration, milliseconds(10'000));
  EXPECT_EQ(p.repeat, 3u);
  EXPECT_EQ(p.seed, 18446744073709551615ull);
  EXPECT_TRUE(p.dry_run);
}

TEST(ChaosParams, Signals) {
  EXPECT_EQ(params(R"({"action":"kill","regex":"x","signal":"SIGTERM"})").signal, SIGTERM);
  EXPECT_EQ(params(R"({"action":"kill","regex":"x","signal":"term"})").signal, SIGTERM);
  EXPECT_EQ(params(R"({"action":"kill","regex":"x","signal":"USR1"})").signal, SIGUSR1);
  EXPECT_EQ(params(R"({"action":"kill","regex":"x","signal":"2"})").signal, 2);
  EXPECT_EQ(params(R"({"action":"kill","regex":"x","signal":15})").signal, 15);
  EXPECT_EQ(chaos::parse_signal("sigkill"), SIGKILL);
  EXPECT_EQ(chaos::parse_signal("HUP"), SIGHUP);
  EXPECT_EQ(chaos::parse_signal("SIGNOPE"), std::nullopt);
  EXPECT_EQ(chaos::parse_signal("0"), std::nullopt);
  EXPECT_EQ(chaos::parse_signal("65"), std::nullopt);
  EXPECT_EQ(chaos::parse_signal(""), std::nullopt);
}

TEST(ChaosParams, RejectsWhatIsNotAnObject) {
  for (const char* bad : {"", "[]", "42", "\"kill\"", "{bad json", "null"}) {
    EXPECT_TRUE(contains(rejection(bad), "must be a JSON object")) << bad;
  }
}

TEST(ChaosParams, RejectsBadValuesWithClearMessages) {
  struct Case {
    const char* json;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"services":["db"]})", "'action' is required"},
      {R"({"action":"explode","services":["db"]})", "unknown action \"explode\""},
      {R"({"action":7,"services":["db"]})", "unknown action 7"},
      {R"({"action":"kill","regex":"("})", "invalid regex '('"},
      {R"({"action":"kill","regex":"[a-"})", "invalid regex"},
      {R"({"action":"kill","regex":""})", "'regex' must be a non-empty string"},
      {R"({"action":"kill","regex":"x","count":0})", "'count' must be an integer >= 1"},
      {R"({"action":"kill","regex":"x","count":-3})", "'count' must be an integer >= 1"},
      {R"({"action":"kill","regex":"x","count":1.5})", "'count' must be an integer >= 1"},
      {R"({"action":"kill","regex":"x","percentage":0})", "0 < percentage <= 100"},
      {R"({"action":"kill","regex":"x","percentage":100.5})", "0 < percentage <= 100"},
      {R"({"action":"kill","regex":"x","percentage":-10})", "0 < percentage <= 100"},
      {R"({"action":"kill","regex":"x","percentage":"50"})", "0 < percentage <= 100"},
      {R"({"action":"kill","regex":"x","count":1,"percentage":10})", "exclude each other"},
      {R"({"action":"pause","regex":"x","pause_seconds":-1})", "'pause_seconds' must not be negative"},
      {R"({"action":"stop","regex":"x","grace_seconds":-1})", "'grace_seconds' must be an integer >= 0"},
      {R"({"action":"kill","regex":"x","duration_seconds":-5})", "'duration_seconds' must not be negative"},
      {R"({"action":"kill","regex":"x","interval_seconds":-1,"repeat":2})",
       "'interval_seconds' must not be negative"},
      {R"({"action":"kill","regex":"x","interval_seconds":0,"repeat":2})", "greater than 0"},
      {R"({"action":"kill","regex":"x","duration_seconds":1e300})", "at most"},
      {R"({"action":"kill","regex":"x","signal":"SIGBOGUS"})", "unknown signal \"SIGBOGUS\""},
      {R"({"action":"kill","regex":"x","signal":99})", "unknown signal 99"},
      {R"({"action":"kill"})", "no targets"},
      {R"({"action":"kill","services":[]})", "non-empty list"},
      {R"({"action":"kill","services":["a",3]})", "non-empty list"},
      {R"({"action":"kill","labels":{"team":1}})", "string value"},
      {R"({"action":"stop","regex":"x","signal":"TERM"})", "'signal' applies only to action kill"},
      {R"({"action":"kill","regex":"x","grace_seconds":3})", "'grace_seconds' applies only to action stop"},
      {R"({"action":"kill","regex":"x","pause_seconds":3})", "'pause_seconds' applies only to action pause"},
      {R"({"action":"kill","regex":"x","interval_seconds":1})", "needs 'duration_seconds' and/or 'repeat'"},
      {R"({"action":"kill","regex":"x","repeat":3})", "'repeat' needs 'interval_seconds'"},
      {R"({"action":"kill","regex":"x","seed":-1})", "'seed' must be an unsigned 64-bit integer"},
      {R"({"action":"kill","regex":"x","seed":1.5})", "'seed' must be an unsigned 64-bit integer"},
      {R"({"action":"kill","regex":"x","dry_run":"yes"})", "'dry_run' must be true or false"},
  };
  for (const auto& c : cases) {
    std::string message = rejection(c.json);
    EXPECT_TRUE(contains(message, c.needle)) << c.json << " -> " << message;
  }
}

TEST(ChaosParams, UnknownKeysAreRejectedWithTheKnownOnes) {
  std::string message = rejection(R"({"action":"kill","servics":["db"]})");
  EXPECT_TRUE(contains(message, "unknown chaos param 'servics'")) << message;
  for (const auto& key : chaos::known_keys()) EXPECT_TRUE(contains(message, key)) << key;
}

// --- Selection ---

TEST(ChaosSelection, PercentageRoundsUpAndTakesAtLeastOne) {
  EXPECT_EQ(chaos::percentage_count(50, 3), 2u);
  EXPECT_EQ(chaos::percentage_count(50, 4), 2u);
  EXPECT_EQ(chaos::percentage_count(10, 30), 3u);  // not 4: 0.1 * 30 is inexact
  EXPECT_EQ(chaos::percentage_count(1, 5), 1u);
  EXPECT_EQ(chaos::percentage_count(0.001, 1000), 1u);
  EXPECT_EQ(chaos::percentage_count(33.4, 3), 2u);
  EXPECT_EQ(chaos::percentage_count(100, 7), 7u);
  EXPECT_EQ(chaos::percentage_count(99.9, 7), 7u);
  EXPECT_EQ(chaos::percentage_count(50, 0), 0u);
}

TEST(ChaosSelection, UniformBelowStaysInRange) {
  std::mt19937_64 rng(7);
  std::vector<int> seen(5);
  for (int i = 0; i < 5000; ++i) {
    auto v = chaos::uniform_below(rng, 5);
    ASSERT_LT(v, 5u);
    ++seen[v];
  }
  for (int n : seen) EXPECT_GT(n, 800);  // roughly 1000 each
  EXPECT_EQ(chaos::uniform_below(rng, 1), 0u);
}

TEST(ChaosSelection, SameSeedSameChoicesDifferentSeedsDiffer) {
  std::vector<std::string> names;
  for (int i = 0; i < 100; ++i) names.push_back("svc" + std::to_string(1000 + i));
  chaos::Params p = params(R"({"action":"kill","regex":"svc","count":10})");
  auto pick = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    return chaos::choose_targets(p, names, rng);
  };
  EXPECT_EQ(pick(42), pick(42));
  EXPECT_EQ(pick(42).size(), 10u);
  EXPECT_NE(pick(42), pick(43));
  EXPECT_NE(pick(1), pick(2));
  auto picked = pick(42);
  std::set<std::string> unique(picked.begin(), picked.end());
  EXPECT_EQ(unique.size(), 10u) << "a target chosen twice";
}

TEST(ChaosSelection, NoCountTakesAllMatchesAndCountIsCapped) {
  std::vector<std::string> names = {"a", "b", "c"};
  std::mt19937_64 rng(1);
  EXPECT_EQ(chaos::choose_targets(params(R"({"action":"kill","regex":"."})"), names, rng), names);
  EXPECT_EQ(chaos::choose_targets(params(R"({"action":"kill","regex":".","count":9})"), names, rng).size(),
            3u);
  EXPECT_EQ(
      chaos::choose_targets(params(R"({"action":"kill","regex":".","percentage":50})"), names, rng).size(),
      2u);
}

TEST(ChaosSelection, MatchingCombinesCriteriaAndSkipsProtectedModulesAndWrongState) {
  FakeContext ctx;
  ctx.add("db-1", {{"team", "qa"}});
  ctx.add("db-2", {{"team", "qa"}, {"io.modhost.protected", "true"}});
  ctx.add("db-3", {{"team", "ops"}});
  ctx.add("db-4", {{"team", "qa"}}, ServiceStatus::exited);
  ctx.add("db-5", {{"team", "qa"}, {"io.modhost.kind", "module"}});
  ctx.add("db-6", {{"team", "qa"}});
  ctx.add("web", {{"team", "qa"}});
  auto listed = ctx.list_services().value();
  chaos::Params p = params(R"({"action":"kill","regex":"^db","labels":{"team":"qa"}})");
  chaos::Matches m = chaos::match_services(p, listed, {"db-6"});
  EXPECT_EQ(m.eligible, (std::vector<std::string>{"db-1"}));
  EXPECT_EQ(m.untouchable, (std::vector<std::string>{"db-2", "db-5"}));
  EXPECT_EQ(m.held, (std::vector<std::string>{"db-6"}));
  EXPECT_EQ(m.wrong_state, (std::vector<std::string>{"db-4 (exited)"}));
  // remove applies to an exited service; restart too.
  EXPECT_EQ(
      chaos::match_services(params(R"({"action":"remove","services":["db-4"]})"), listed, {}).eligible.size(),
      1u);
  // services AND regex.
  EXPECT_EQ(
      chaos::match_services(params(R"({"action":"kill","services":["db-1","web"],"regex":"^w"})"), listed, {})
          .eligible,
      (std::vector<std::string>{"web"}));
}

TEST(ChaosSelection, ProtectedServicesAreNeverChosen) {
  FakeContext ctx;
  for (int i = 0; i < 30; ++i) {
    std::map<std::string, std::string> labels;
    if (i % 3 == 0) labels["io.modhost.protected"] = "true";
    ctx.add("s" + std::to_string(i), labels);
  }
  FakeClock clock;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    FakeContext fresh = ctx;
    auto r =
        run(fresh, R"({"action":"restart","regex":"^s","percentage":60,"seed":)" + std::to_string(seed) + "}",
            clock);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->actions.size(), chaos::percentage_count(60, 20));
    for (const auto& a : r->actions) {
      int n = std::stoi(a.service.substr(1));
      EXPECT_NE(n % 3, 0) << "touched protected " << a.service;
    }
  }
}

// --- Runs ---

TEST(ChaosRun, KillByNameReportsAndActs) {
  FakeContext ctx;
  ctx.add("db");
  ctx.add("web");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"kill","services":["db"],"signal":"TERM","seed":5})", clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"kill db"}));
  EXPECT_EQ(ctx.last_signal, SIGTERM);
  EXPECT_EQ(ctx.status("db"), ServiceStatus::exited);
  EXPECT_EQ(ctx.status("web"), ServiceStatus::running);
  ASSERT_EQ(r->actions.size(), 1u);
  EXPECT_EQ(r->actions[0].service, "db");
  EXPECT_EQ(r->actions[0].signal, SIGTERM);
  EXPECT_TRUE(r->actions[0].ok);
  EXPECT_EQ(r->seed, 5u);
  EXPECT_EQ(r->rounds, 1u);
  EXPECT_FALSE(r->cancelled);
  EXPECT_EQ(clock.sleeps, 0) << "a single kill waits for nothing";
}

TEST(ChaosRun, ReportShape) {
  FakeContext ctx;
  ctx.add("db");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"pause","services":["db"],"pause_seconds":2,"seed":99})", clock);
  ASSERT_TRUE(r.ok());
  boost::json::value v = boost::json::parse(chaos::to_json(r.value()));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("seed").to_number<std::uint64_t>(), 99u);
  EXPECT_EQ(o.at("dryRun").as_bool(), false);
  EXPECT_EQ(o.at("cancelled").as_bool(), false);
  EXPECT_EQ(o.at("rounds").to_number<int>(), 1);
  ASSERT_EQ(o.at("actions").as_array().size(), 1u);
  const auto& a = o.at("actions").at(0).as_object();
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(std::string(a.at("time").as_string()), rfc3339)) << a.at("time");
  EXPECT_EQ(a.at("time").as_string(), "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(a.at("round").to_number<int>(), 1);
  EXPECT_EQ(a.at("action").as_string(), "pause");
  EXPECT_EQ(a.at("service").as_string(), "db");
  EXPECT_EQ(a.at("pauseSeconds").to_number<double>(), 2.0);
  EXPECT_EQ(a.at("ok").as_bool(), true);
  EXPECT_EQ(a.at("error").as_string(), "");
  ASSERT_EQ(o.at("restored").as_array().size(), 1u);
  const auto& x = o.at("restored").at(0).as_object();
  EXPECT_EQ(x.at("action").as_string(), "unpause");
  EXPECT_EQ(x.at("service").as_string(), "db");
  EXPECT_EQ(x.at("time").as_string(), "2023-11-14T22:13:22.000Z");
  EXPECT_EQ(x.at("ok").as_bool(), true);

  // kill carries the signal number.
  FakeContext k;
  k.add("db");
  auto killed = run(k, R"({"action":"kill","services":["db"]})", clock);
  auto kv = boost::json::parse(chaos::to_json(killed.value()));
  EXPECT_EQ(kv.at("actions").at(0).at("signal").to_number<int>(), 9);
  EXPECT_EQ(chaos::format_time(std::chrono::system_clock::time_point(milliseconds(1'700'000'000'042))),
            "2023-11-14T22:13:20.042Z");
}

TEST(ChaosRun, PauseIsReleasedAfterPauseSeconds) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"pause","regex":".","pause_seconds":1})", clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"pause a", "pause b", "unpause a", "unpause b"}));
  EXPECT_EQ(ctx.status("a"), ServiceStatus::running);
  EXPECT_EQ(clock.elapsed, milliseconds(1000));
  EXPECT_LE(clock.longest_sleep, chaos::kPollStep) << "sleeps poll for cancellation in small steps";
  ASSERT_EQ(r->restored.size(), 2u);
}

TEST(ChaosRun, PausesAreReleasedWithinARoundScheduleAndRoundsReselect) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b");
  ctx.add("c");
  FakeClock clock;
  // Rounds at 0, 3, 6 s; each pause lasts 1 s, so every round sees all three again.
  auto r =
      run(ctx, R"({"action":"pause","regex":".","count":1,"pause_seconds":1,"interval_seconds":3,"repeat":3,
                        "seed":11})",
          clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->rounds, 3u);
  ASSERT_EQ(r->actions.size(), 3u);
  ASSERT_EQ(r->restored.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    auto paused_at = r->actions[i].time;
    EXPECT_EQ(paused_at, clock.wall + std::chrono::seconds(3 * i));
    EXPECT_EQ(r->restored[i].time - paused_at, std::chrono::seconds(1)) << i;
    EXPECT_EQ(r->restored[i].round, static_cast<std::uint64_t>(i + 1));
  }
  EXPECT_EQ(clock.elapsed, milliseconds(7000));
}

TEST(ChaosRun, KilledServicesAreNotChosenAgainInLaterRounds) {
  FakeContext ctx;
  for (const char* n : {"a", "b", "c", "d"}) ctx.add(n);
  FakeClock clock;
  auto r =
      run(ctx, R"({"action":"kill","regex":".","count":1,"interval_seconds":1,"repeat":4,"seed":3})", clock);
  ASSERT_TRUE(r.ok());
  auto acted = services_acted_on(r.value());
  EXPECT_EQ(std::set<std::string>(acted.begin(), acted.end()).size(), 4u);
  // A fifth round would find nothing: it is skipped, not an error.
  FakeContext two;
  two.add("a");
  auto r2 = run(two, R"({"action":"kill","regex":".","interval_seconds":1,"repeat":3})", clock);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->actions.size(), 1u);
  EXPECT_EQ(r2->rounds, 3u);
}

TEST(ChaosRun, StopIsRestoredWhenTheDurationEnds) {
  FakeContext ctx;
  ctx.add("db");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"stop","services":["db"],"grace_seconds":3,"duration_seconds":5})", clock);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"stop db", "start db"}));
  EXPECT_EQ(ctx.last_grace, 3);
  EXPECT_EQ(clock.elapsed, milliseconds(5000));
  ASSERT_EQ(r->restored.size(), 1u);
  EXPECT_EQ(r->restored[0].action, "start");
  EXPECT_EQ(ctx.status("db"), ServiceStatus::running);
}

TEST(ChaosRun, DurationCutsALongPauseShort) {
  FakeContext ctx;
  ctx.add("db");
  FakeClock clock;
  auto r =
      run(ctx, R"({"action":"pause","services":["db"],"pause_seconds":100,"duration_seconds":2})", clock);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(clock.elapsed, milliseconds(2000));
  EXPECT_EQ(ctx.status("db"), ServiceStatus::running);
}

TEST(ChaosRun, CancelRestoresEverythingHeldAndSaysSo) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b");
  ctx.add("c");
  FakeClock clock;
  clock.cancel_at = milliseconds(2500);
  auto r = run(ctx, R"({"action":"pause","regex":".","count":1,"pause_seconds":600,"interval_seconds":1,
                        "duration_seconds":600,"seed":8})",
               clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->cancelled);
  EXPECT_EQ(r->rounds, 3u);  // at 0, 1 and 2 s
  EXPECT_EQ(r->actions.size(), 3u);
  EXPECT_EQ(r->restored.size(), 3u);
  for (const char* n : {"a", "b", "c"}) EXPECT_EQ(ctx.status(n), ServiceStatus::running) << n;
  // Woken within one poll step of the signal, not at the end of the interval.
  EXPECT_LE(clock.elapsed, milliseconds(2500) + chaos::kPollStep);
  EXPECT_TRUE(boost::json::parse(chaos::to_json(r.value())).at("cancelled").as_bool());
}

TEST(ChaosRun, CancelBeforeTheFirstRoundChangesNothing) {
  FakeContext ctx;
  ctx.add("a");
  FakeClock clock;
  clock.cancel_at = milliseconds(0);
  auto r = run(ctx, R"({"action":"kill","regex":"."})", clock);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cancelled);
  EXPECT_TRUE(ctx.mutating_calls().empty());
  EXPECT_EQ(r->rounds, 0u);
}

TEST(ChaosRun, DryRunChangesNothingAndReportsThePlan) {
  FakeContext ctx;
  for (const char* n : {"a", "b", "c", "d"}) ctx.add(n);
  FakeClock clock;
  auto r = run(ctx, R"({"action":"stop","regex":".","count":1,"interval_seconds":10,"duration_seconds":35,
                        "dry_run":true,"seed":77})",
               clock);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(ctx.mutating_calls().empty()) << ctx.mutating_calls().front();
  EXPECT_EQ(clock.sleeps, 0) << "a dry run does not wait";
  EXPECT_TRUE(r->dry_run);
  EXPECT_EQ(r->rounds, 4u);  // 0, 10, 20, 30 s
  ASSERT_EQ(r->actions.size(), 4u);
  auto acted = services_acted_on(r.value());
  EXPECT_EQ(std::set<std::string>(acted.begin(), acted.end()).size(), 4u)
      << "a planned stop holds its service";
  EXPECT_EQ(r->actions[3].time, clock.wall + std::chrono::seconds(30));
  ASSERT_EQ(r->restored.size(), 4u);
  EXPECT_EQ(r->restored[0].time, clock.wall + std::chrono::seconds(35));

  // The same seed on a real run makes the same choices.
  FakeContext real = ctx;
  auto r2 = run(real, R"({"action":"stop","regex":".","count":1,"interval_seconds":10,"duration_seconds":35,
                         "seed":77})",
                clock);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(services_acted_on(r2.value()), acted);
  EXPECT_TRUE(boost::json::parse(chaos::to_json(r.value())).at("dryRun").as_bool());
}

TEST(ChaosRun, SameSeedReplaysOnAnIdenticalEnclave) {
  auto make = [] {
    FakeContext ctx;
    for (int i = 0; i < 12; ++i) ctx.add("svc-" + std::to_string(i));
    return ctx;
  };
  FakeClock clock;
  const std::string json =
      R"({"action":"kill","regex":"svc","count":2,"interval_seconds":1,"repeat":3,"seed":2024})";
  FakeContext one = make(), two = make();
  auto r1 = run(one, json, clock);
  auto r2 = run(two, json, clock);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(services_acted_on(r1.value()), services_acted_on(r2.value()));
  EXPECT_EQ(r1->actions.size(), 6u);
  FakeContext three = make();
  auto r3 =
      run(three, R"({"action":"kill","regex":"svc","count":2,"interval_seconds":1,"repeat":3,"seed":2025})",
          clock);
  EXPECT_NE(services_acted_on(r3.value()), services_acted_on(r1.value()));
}

TEST(ChaosRun, WithoutASeedOneIsGeneratedAndReported) {
  FakeContext ctx;
  ctx.add("a");
  FakeClock clock;
  auto r1 = run(ctx, R"({"action":"restart","regex":"."})", clock);
  auto r2 = run(ctx, R"({"action":"restart","regex":"."})", clock);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_NE(r1->seed, r2->seed);
  EXPECT_EQ(boost::json::parse(chaos::to_json(r1.value())).at("seed").to_number<std::uint64_t>(), r1->seed);
}

TEST(ChaosRun, BadTargetsFailBeforeAnyChange) {
  FakeContext ctx;
  ctx.add("db");
  ctx.add("guard", {{"io.modhost.protected", "true"}});
  ctx.add("gone", {}, ServiceStatus::exited);
  FakeClock clock;

  auto unknown = run(ctx, R"({"action":"kill","services":["db","dbb"]})", clock);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::invalid_argument);
  EXPECT_TRUE(contains(unknown.error().message(), "unknown service 'dbb'")) << unknown.error().message();
  EXPECT_TRUE(contains(unknown.error().message(), "db, gone, guard")) << unknown.error().message();

  auto none = run(ctx, R"({"action":"kill","regex":"^g"})", clock);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::invalid_argument);
  EXPECT_TRUE(contains(none.error().message(), "no service matches the targets: regex '^g'"))
      << none.error().message();
  EXPECT_TRUE(contains(none.error().message(), "protected: guard")) << none.error().message();
  EXPECT_TRUE(contains(none.error().message(), "not running: gone (exited)")) << none.error().message();

  auto labels = run(ctx, R"({"action":"kill","labels":{"team":"nobody"}})", clock);
  ASSERT_FALSE(labels.ok());
  EXPECT_TRUE(contains(labels.error().message(), "labels {team=nobody}")) << labels.error().message();

  ctx.fail_list = true;
  auto unlisted = run(ctx, R"({"action":"kill","regex":"."})", clock);
  ASSERT_FALSE(unlisted.ok());
  EXPECT_TRUE(contains(unlisted.error().message(), "the backend is gone"));

  EXPECT_TRUE(ctx.mutating_calls().empty());
  EXPECT_EQ(clock.elapsed, milliseconds(0));
}

TEST(ChaosRun, AFailedActionIsRecordedAndTheRunGoesOn) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b");
  ctx.fail.insert("kill a");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"kill","regex":"."})", clock);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->actions.size(), 2u);
  EXPECT_FALSE(r->actions[0].ok);
  EXPECT_TRUE(contains(r->actions[0].error, "injected failure of kill a"));
  EXPECT_TRUE(r->actions[1].ok);
  EXPECT_EQ(ctx.status("b"), ServiceStatus::exited);
}

TEST(ChaosRun, AFailedPauseIsNotUnpausedAndAFailedRestoreIsReported) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b");
  ctx.fail.insert("pause a");
  ctx.fail.insert("unpause b");
  FakeClock clock;
  auto r = run(ctx, R"({"action":"pause","regex":".","pause_seconds":1})", clock);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ctx.mutating_calls(), (std::vector<std::string>{"pause a", "pause b", "unpause b"}));
  ASSERT_EQ(r->restored.size(), 1u);
  EXPECT_FALSE(r->restored[0].ok);
  EXPECT_TRUE(contains(r->restored[0].error, "injected failure of unpause b"));
}

TEST(ChaosRun, RemoveTakesServicesAway) {
  FakeContext ctx;
  ctx.add("a");
  ctx.add("b", {}, ServiceStatus::exited);
  FakeClock clock;
  auto r = run(ctx, R"({"action":"remove","regex":"."})", clock);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(ctx.exists("a"));
  EXPECT_FALSE(ctx.exists("b"));
  EXPECT_TRUE(r->restored.empty());
}
