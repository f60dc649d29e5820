// The small languages of the command line: KEY=VALUE, port specs, memory
// sizes, wait specs. Pure; fuzzed (tests/fuzz/specs_fuzz.cpp).
#include "cli/specs.hpp"

#include <charconv>
#include <cstdint>
#include <sstream>

namespace modhost::cli {

Result<std::pair<std::string, std::string>> parse_key_value(std::string_view text, std::string_view what) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Error(ErrorCode::invalid_argument,
                 "invalid " + std::string(what) + " '" + std::string(text) + "': expected KEY=VALUE");
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

Result<PortSpec> parse_port_spec(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::invalid_argument, "invalid port spec '" + std::string(text) + "': " + why +
                                                  " (expected NAME=NUMBER[/tcp|udp|sctp])");
  };
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) return bad("no name");
  PortSpec p;
  p.name = std::string(text.substr(0, eq));
  std::string_view rest = text.substr(eq + 1);
  auto slash = rest.find('/');
  std::string_view number = rest.substr(0, slash);
  if (slash != std::string_view::npos) p.protocol = std::string(rest.substr(slash + 1));
  if (p.protocol != "tcp" && p.protocol != "udp" && p.protocol != "sctp") return bad("unknown protocol");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || ptr != number.data() + number.size() || value == 0 || value > 65535) {
    return bad("port number must be 1 to 65535");
  }
  p.number = static_cast<std::uint16_t>(value);
  return p;
}

Result<std::uint64_t> parse_memory(std::string_view text) {
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  std::uint64_t mult = 0;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "K")
    mult = 1ull << 10;
  else if (unit == "m" || unit == "M")
    mult = 1ull << 20;
  else if (unit == "g" || unit == "G")
    mult = 1ull << 30;
  if (ec != std::errc() || mult == 0 || value == 0 || value > UINT64_MAX / mult) {
    return Error(ErrorCode::invalid_argument,
                 "invalid memory '" + std::string(text) + "': use e.g. 64m or 1g");
  }
  return value * mult;
}

Result<ReadinessCheck> parse_wait_spec(std::string_view text) {
  ReadinessCheck c;
  auto colon = text.find(':');
  std::string_view kind = text.substr(0, colon);
  std::string_view arg = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument, "invalid wait spec '" + std::string(text) +
                                                  "': use tcp:PORT, http:PORT/PATH or exec:COMMAND");
  };
  if (arg.empty()) return bad();
  if (kind == "tcp") {
    c.kind = ReadinessCheck::Kind::tcp;
    c.port = std::string(arg);
  } else if (kind == "http") {
    c.kind = ReadinessCheck::Kind::http;
    auto slash = arg.find('/');
    c.port = std::string(arg.substr(0, slash));
    c.path = slash == std::string_view::npos ? "/" : std::string(arg.substr(slash));
    if (c.port.empty()) return bad();
  } else if (kind == "exec") {
    c.kind = ReadinessCheck::Kind::exec;
    std::istringstream words{std::string(arg)};
    for (std::string w; words >> w;) c.command.push_back(w);
  } else {
    return bad();
  }
  return c;
}

}  // namespace modhost::cli
