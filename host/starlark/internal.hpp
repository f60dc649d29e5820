// Reading plan arguments (docs/starlark-plan.md) into engine types. Internal
// to the Starlark executor.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::starlark::detail {

namespace json = boost::json;
using std::chrono::milliseconds;

std::string str(const json::object& o, std::string_view key);
std::vector<std::string> strings(const json::object& o, std::string_view key);
std::map<std::string, std::string> string_map(const json::object& o, std::string_view key);
std::int64_t integer(const json::object& o, std::string_view key, std::int64_t fallback = 0);
double number(const json::object& o, std::string_view key, double fallback = 0);
bool boolean(const json::object& o, std::string_view key, bool fallback = false);
// The object at KEY; null when absent or null.
const json::object* object(const json::object& o, std::string_view key);

// A Go duration ("1s", "2m30s", "500ms"); nullopt for null or absent.
Result<std::optional<milliseconds>> duration(const json::object& o, std::string_view key);
Result<milliseconds> parse_go_duration(std::string_view text);
std::string format_duration(milliseconds d);

// A ServiceConfig argument (CONFIG) as the backend takes it: ports,
// files, entrypoint, cmd, env, limits, labels (and modhost's own).
Result<ServiceConfig> service_config(const std::string& name, const json::object& config);
// The subnetwork a CONFIG puts its service in ("" for the default one).
std::string subnetwork(const json::object& config);

// What a CONFIG asks to wait for after the start: each port with a wait.
struct PortWait {
  std::string port;
  milliseconds timeout{0};
};
std::vector<PortWait> port_waits(const json::object& config);

// acceptable_codes, or the default: [0] for exec, the 2xx codes for HTTP.
std::vector<std::int64_t> acceptable_codes(const json::object& args, bool http);

// A CONN object as a partition Connection.
Connection connection(const json::object& conn);

// The fields a kind produces ("NAME." prefixed ones for add_services are
// checked by prefix).
bool produces(const std::string& kind, const json::object& args, const std::string& field);

}  // namespace modhost::starlark::detail
