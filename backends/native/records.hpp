// The records the native backend's stages hand each other: KEY=VALUE pairs,
// each ended by a NUL byte. A key may repeat (argv, env, mounts, ports), in
// order. No dependencies: stage3 is a static binary.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace modhost::backend::native {

using Records = std::vector<std::pair<std::string, std::string>>;

inline std::string encode_records(const Records& records) {
  std::string out;
  for (const auto& [k, v] : records) {
    out += k;
    out += '=';
    out += v;
    out += '\0';
  }
  return out;
}

// A record without '=' is dropped (it cannot have come from encode_records).
inline Records decode_records(std::string_view data) {
  Records out;
  while (!data.empty()) {
    const auto end = data.find('\0');
    const std::string_view rec = data.substr(0, end);
    if (const auto eq = rec.find('='); eq != std::string_view::npos) {
      out.emplace_back(std::string(rec.substr(0, eq)), std::string(rec.substr(eq + 1)));
    }
    if (end == std::string_view::npos) break;
    data.remove_prefix(end + 1);
  }
  return out;
}

// The first value of `key`, or `fallback`.
inline std::string record(const Records& records, std::string_view key, std::string fallback = {}) {
  for (const auto& [k, v] : records) {
    if (k == key) return v;
  }
  return fallback;
}

// Every value of `key`, in order.
inline std::vector<std::string> all_records(const Records& records, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : records) {
    if (k == key) out.push_back(v);
  }
  return out;
}

}  // namespace modhost::backend::native
