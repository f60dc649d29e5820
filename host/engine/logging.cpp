#include "engine/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace modhost::engine {
namespace {

std::mutex mutex;
spdlog::sink_ptr shared_sink;
std::vector<spdlog::sink_ptr> extra_sinks;
spdlog::level::level_enum current_level = spdlog::level::warn;

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::trace:
      return spdlog::level::trace;
    case LogLevel::debug:
      return spdlog::level::debug;
    case LogLevel::info:
      return spdlog::level::info;
    case LogLevel::warn:
      return spdlog::level::warn;
    case LogLevel::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// What modules log is part of their output: shown at info even when the
// host's own level is warn (the default); a lower host level lowers it too.
spdlog::level::level_enum level_for(const std::string& name) {
  if (name.rfind("module.", 0) == 0) return std::min(current_level, spdlog::level::info);
  return current_level;
}

spdlog::sink_ptr sink_locked() {
  if (!shared_sink) {
    shared_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    shared_sink->set_pattern("[%n] %l: %v");
  }
  return shared_sink;
}

}  // namespace

void init_logging(LogLevel level, const std::string& pattern) {
  std::lock_guard lock(mutex);
  auto sink = sink_locked();
  if (!pattern.empty()) sink->set_pattern(pattern);
  current_level = to_spdlog(level);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level_for(l->name())); });
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(mutex);
  if (auto existing = spdlog::get(name)) return existing;
  std::vector<spdlog::sink_ptr> sinks = {sink_locked()};
  sinks.insert(sinks.end(), extra_sinks.begin(), extra_sinks.end());
  auto created = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  created->set_level(level_for(name));
  spdlog::register_logger(created);
  return created;
}

void add_log_sink(std::shared_ptr<spdlog::sinks::sink> sink) {
  std::lock_guard lock(mutex);
  extra_sinks.push_back(sink);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->sinks().push_back(sink); });
}

bool parse_log_level(std::string_view text, LogLevel& level) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "trace")
    level = LogLevel::trace;
  else if (lower == "debug")
    level = LogLevel::debug;
  else if (lower == "info")
    level = LogLevel::info;
  else if (lower == "warn" || lower == "warning")
    level = LogLevel::warn;
  else if (lower == "error")
    level = LogLevel::error;
  else
    return false;
  return true;
}

}  // namespace modhost::engine
