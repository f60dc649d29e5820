#include "engine/handshake.hpp"

#include <charconv>

namespace modhost::engine {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

bool to_int(std::string_view s, int& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

std::string format_handshake(const Handshake& h) {
  return std::to_string(h.core_version) + "|" + std::to_string(h.api_version) + "|" + h.network + "|" +
         h.address + "|" + h.protocol;
}

Result<Handshake> parse_handshake(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  auto bad = [&](const std::string& why) {
    std::string shown(line.substr(0, 200));
    return Error(ErrorCode::unavailable, "invalid handshake line '" + shown + "': " + why +
                                             " (a module must not write to stdout before the handshake)");
  };
  std::vector<std::string_view> parts = split(line, '|');
  if (parts.size() != 5) return bad("expected CORE|API|NETWORK|ADDRESS|PROTOCOL");
  Handshake h;
  if (!to_int(parts[0], h.core_version)) return bad("core version is not a number");
  if (h.core_version != kHandshakeCoreVersion) {
    return bad("core version " + std::to_string(h.core_version) + ", this host speaks " +
               std::to_string(kHandshakeCoreVersion));
  }
  if (!to_int(parts[1], h.api_version)) return bad("API version is not a number");
  h.network = std::string(parts[2]);
  h.address = std::string(parts[3]);
  h.protocol = std::string(parts[4]);
  if (h.network != "unix" && h.network != "tcp") return bad("network must be unix or tcp");
  if (h.address.empty()) return bad("empty address");
  if (h.protocol != "grpc") return bad("protocol must be grpc");
  return h;
}

int negotiate_api_version(std::string_view offered_csv, const std::vector<int>& supported) {
  int best = 0;
  for (std::string_view item : split(offered_csv, ',')) {
    int v = 0;
    if (!to_int(item, v)) continue;
    for (int s : supported) {
      if (s == v && v > best) best = v;
    }
  }
  return best;
}

}  // namespace modhost::engine
