// A hand-written EnclaveContext over services in memory, and a clock whose
// time passes only when slept: the built-in modules' logic tested without a
// container backend.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "modhost/enclave_context.hpp"
#include "run_support.hpp"

namespace modhost::testing {

using std::chrono::milliseconds;

// Services in memory; every call is logged as "verb name".
class FakeContext final : public modhost::EnclaveContext {
 public:
  void add(const std::string& name, std::map<std::string, std::string> labels = {},
           ServiceStatus status = ServiceStatus::running) {
    ServiceInfo s;
    s.name = name;
    s.id = "id-" + name;
    s.status = status;
    s.labels = std::move(labels);
    services_[name] = s;
  }
  ServiceStatus status(const std::string& name) const { return services_.at(name).status; }
  bool exists(const std::string& name) const { return services_.count(name) != 0; }

  std::vector<std::string> calls;  // "kill db", "unpause web", ...
  std::set<std::string> fail;      // "verb name" that fail
  bool fail_list = false;

  std::vector<std::string> mutating_calls() const {
    std::vector<std::string> out;
    for (const auto& c : calls) {
      if (c != "list") out.push_back(c);
    }
    return out;
  }

  std::string enclave_id() const override { return "fake-enclave"; }
  void log(modhost::LogLevel, std::string_view message) override { logs.emplace_back(message); }
  Result<ServiceInfo> add_service(const modhost::ServiceConfig& config) override {
    calls.push_back("add " + config.name);
    if (fail.count(calls.back()) != 0)
      return Error(ErrorCode::failed_precondition, "injected failure of " + calls.back());
    if (services_.count(config.name) != 0) return Error(ErrorCode::already_exists, "exists");
    add(config.name, config.labels);
    configs[config.name] = config;
    return services_.at(config.name);
  }
  Status remove_service(std::string_view name) override {
    return change("remove", name, {}, [&](ServiceInfo&) {
      services_.erase(std::string(name));
      configs.erase(std::string(name));
    });
  }
  Result<std::vector<ServiceInfo>> list_services() override {
    calls.emplace_back("list");
    if (fail_list) return Error(ErrorCode::unavailable, "the backend is gone");
    std::vector<ServiceInfo> out;
    for (const auto& [n, s] : services_) out.push_back(s);
    return out;
  }
  Result<ServiceInfo> inspect_service(std::string_view name) override {
    auto it = services_.find(std::string(name));
    if (it == services_.end()) return Error(ErrorCode::not_found, "no service");
    return it->second;
  }
  Result<modhost::ExecResult> exec(std::string_view name, const std::vector<std::string>&) override {
    calls.push_back("exec " + std::string(name));
    if (fail.count(calls.back()) != 0)
      return Error(ErrorCode::failed_precondition, "injected failure of " + calls.back());
    auto code = exit_codes.find(std::string(name));
    return modhost::ExecResult{code == exit_codes.end() ? 0 : code->second, "out of " + std::string(name)};
  }
  Status wait_ready(std::string_view name, const modhost::ReadinessCheck&) override {
    return simple("ready", name);
  }
  Result<modhost::ServiceConfig> service_config(std::string_view name) override {
    auto it = configs.find(std::string(name));
    if (it != configs.end()) return it->second;
    if (services_.count(std::string(name)) == 0) return Error(ErrorCode::not_found, "no service");
    modhost::ServiceConfig c;
    c.name = std::string(name);
    c.image = "img:1";
    return c;
  }
  Status copy_to_service(std::string_view name, std::string_view dir, std::string_view) override {
    return simple("copy", std::string(name) + " " + std::string(dir));
  }
  Status write_file(std::string_view name, std::string_view path, std::string_view content,
                    std::uint32_t) override {
    written[std::string(name) + ":" + std::string(path)] = std::string(content);
    return simple("write", std::string(name) + " " + std::string(path));
  }
  Result<std::string> download_artifact(std::string_view name) override {
    calls.push_back("artifact " + std::string(name));
    return std::string("tgz bytes");
  }
  Status stop_service(std::string_view name, int grace) override {
    last_grace = grace;
    return change("stop", name, {}, [](ServiceInfo& s) { s.status = ServiceStatus::stopped; });
  }
  Status start_service(std::string_view name) override {
    return change("start", name, {}, [](ServiceInfo& s) { s.status = ServiceStatus::running; });
  }
  Status restart_service(std::string_view name) override {
    return change("restart", name, {}, [](ServiceInfo& s) { s.status = ServiceStatus::running; });
  }
  Status pause_service(std::string_view name) override {
    return change("pause", name, ServiceStatus::running,
                  [](ServiceInfo& s) { s.status = ServiceStatus::paused; });
  }
  Status unpause_service(std::string_view name) override {
    return change("unpause", name, ServiceStatus::paused,
                  [](ServiceInfo& s) { s.status = ServiceStatus::running; });
  }
  Status kill_service(std::string_view name, int signal) override {
    last_signal = signal;
    return change("kill", name, ServiceStatus::running,
                  [](ServiceInfo& s) { s.status = ServiceStatus::exited; });
  }
  Result<std::string> service_logs(std::string_view) override { return unsupported(); }
  Status repartition(const modhost::NetworkPartitioning& plan) override {
    calls.emplace_back(plan.empty() ? "heal" : "repartition");
    if (fail.count(calls.back()) != 0)
      return Error(ErrorCode::failed_precondition, "injected failure of " + calls.back());
    plans.push_back(plan);
    return modhost::ok_status();
  }

  std::vector<std::string> logs;
  std::map<std::string, modhost::ServiceConfig> configs;  // as added (or set by the test)
  std::map<std::string, int> exit_codes;                  // exec exit code by service; default 0
  std::map<std::string, std::string> written;             // "service:path" -> content
  std::vector<modhost::NetworkPartitioning> plans;        // every repartition, heals included
  int last_signal = 0;
  int last_grace = -1;

 private:
  static Error unsupported() { return Error(ErrorCode::internal, "not in the fake"); }

  Status simple(const char* verb, std::string_view what) {
    calls.push_back(std::string(verb) + " " + std::string(what));
    if (fail.count(calls.back()) != 0)
      return Error(ErrorCode::failed_precondition, "injected failure of " + calls.back());
    return modhost::ok_status();
  }

  template <typename F>
  Status change(const char* verb, std::string_view name, std::optional<ServiceStatus> needs, F f) {
    std::string call = std::string(verb) + " " + std::string(name);
    calls.push_back(call);
    if (fail.count(call) != 0) return Error(ErrorCode::failed_precondition, "injected failure of " + call);
    auto it = services_.find(std::string(name));
    if (it == services_.end()) return Error(ErrorCode::not_found, "no service '" + std::string(name) + "'");
    if (needs && it->second.status != *needs) return Error(ErrorCode::failed_precondition, "wrong state");
    f(it->second);
    return modhost::ok_status();
  }

  std::map<std::string, ServiceInfo> services_;
};

// Time passes only in sleep_for; `cancel_at` turns the cancel flag on once
// that much time has passed.
class FakeClock final : public modhost::modules::Clock {
 public:
  std::chrono::steady_clock::time_point now() override { return start + elapsed; }
  std::chrono::system_clock::time_point wall_now() override {
    return wall + std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed);
  }
  void sleep_for(milliseconds d) override {
    ++sleeps;
    longest_sleep = std::max(longest_sleep, d);
    elapsed += d;
  }
  bool cancelled() const { return cancel_at && elapsed >= *cancel_at; }

  std::chrono::steady_clock::time_point start{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point wall{std::chrono::seconds(1'700'000'000)};
  milliseconds elapsed{0};
  milliseconds longest_sleep{0};
  int sleeps = 0;
  std::optional<milliseconds> cancel_at;
};

// Running services with these names.
inline FakeContext enclave_with(std::initializer_list<const char*> names) {
  FakeContext ctx;
  for (const char* n : names) ctx.add(n);
  return ctx;
}

// A module's params parsed by `parse`, or a test failure and defaults.
template <typename Parse>
auto parsed(Parse parse, const std::string& json) {
  auto p = parse(json);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
  using Params = std::remove_cvref_t<decltype(p.value())>;
  return p.ok() ? std::move(p).value() : Params{};
}

// The message with which `parse` rejects `json` as invalid_argument.
template <typename Parse>
std::string rejection_by(Parse parse, const std::string& json) {
  auto p = parse(json);
  if (p.ok()) return "accepted: " + json;
  EXPECT_EQ(p.error().code(), ErrorCode::invalid_argument);
  return p.error().message();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace modhost::testing
