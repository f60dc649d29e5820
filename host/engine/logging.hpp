// Named loggers that share the host's sinks: "engine", "runner",
// "backend.docker", "module.<name>".
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "modhost/types.hpp"

namespace spdlog {
class logger;
}

namespace modhost::engine {

// Sends every logger's output to stderr at LEVEL and above. `pattern` is an
// spdlog pattern; the default prints "[name] level: message".
void init_logging(LogLevel level, const std::string& pattern = "");

std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Parses "trace|debug|info|warn|error" (case-insensitive).
bool parse_log_level(std::string_view text, LogLevel& level);

}  // namespace modhost::engine
