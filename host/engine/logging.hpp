// Named loggers that share the host's sinks: "engine", "runner",
// "backend.docker", "module.<name>".
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "modhost/types.hpp"

namespace spdlog {
class logger;
namespace sinks {
class sink;
}
}  // namespace spdlog

namespace modhost::engine {

// Sends every logger's output to stderr at LEVEL and above. `pattern` is an
// spdlog pattern; the default prints "[name] level: message".
void init_logging(LogLevel level, const std::string& pattern = "");

std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Adds a sink to every logger, present and future (tests capture logs so).
void add_log_sink(std::shared_ptr<spdlog::sinks::sink> sink);

// Parses "trace|debug|info|warn|error" (case-insensitive).
bool parse_log_level(std::string_view text, LogLevel& level);

}  // namespace modhost::engine
