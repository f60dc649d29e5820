// The config file of modhost-netshaper, as the engine writes it:
//
//   {"generation": 3, "seed": 42,
//    "namespaces": [{"pid": 1234,
//                    "queues": [{"num": 19785, "delay_us": 200000, "jitter_us": 20000,
//                                "correlation": 25.0, "distribution": "uniform", "loss": 10.0}]}]}
//
// generation: required, integer >= 0; written to the applied file once in force.
// seed: optional, integer >= 0; without it each run draws its own.
// namespaces: required array; each names a process by pid (required, > 0,
//   unique) whose network namespace holds the queues.
// queues: required array; num required (0..65535, unique in its namespace);
//   delay_us, jitter_us (integers, 0..3600000000), correlation and loss
//   (numbers, 0..100) default to 0, distribution ("uniform" | "normal")
//   to uniform.
// Unknown keys are errors, so that a typo ("delay_ms") is not silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netshaper/profile.hpp"

namespace modhost::netshaper {

struct QueueConfig {
  std::uint16_t num = 0;
  Profile profile;
};

struct NamespaceConfig {
  int pid = 0;
  std::vector<QueueConfig> queues;
};

struct Config {
  std::uint64_t generation = 0;
  std::optional<std::uint64_t> seed;
  std::vector<NamespaceConfig> namespaces;
};

// A config, or why there is none. The error names the field
// ("namespaces[0].queues[1].loss: must be between 0 and 100, got 150").
struct ConfigResult {
  std::optional<Config> config;
  std::string error;
};

inline constexpr std::int64_t kMaxDelayUs = 3'600'000'000;  // one hour

ConfigResult parse_config(std::string_view json);

// Reads and parses `path`; errors start with the path.
ConfigResult load_config(const std::string& path);

}  // namespace modhost::netshaper
