// Small rules and helpers both backends share: what a name may be, random
// ids, timestamps.
#pragma once

#include <chrono>
#include <cstddef>
#include <ctime>
#include <random>
#include <string>
#include <string_view>

namespace modhost::backend {

// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}: safe in container names, DNS aliases,
// labels, file names and host names.
inline bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(s.front())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// A service's user: "" (the image's), or USER[:GROUP] where each part is a
// number or a name of [A-Za-z0-9_.-] (looked up in the image's files).
inline bool valid_user(std::string_view s) {
  if (s.empty()) return true;
  auto part = [](std::string_view p) {
    if (p.empty() || p.size() > 32) return false;
    for (char c : p) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
      if (!ok) return false;
    }
    return true;
  };
  const auto colon = s.find(':');
  if (colon == std::string_view::npos) return part(s);
  return part(s.substr(0, colon)) && part(s.substr(colon + 1));
}

// The end of a program's output as one line, for an error: at most the last
// 2,000 bytes, trailing newlines dropped, lines joined by " | ".
inline std::string output_as_one_line(std::string out) {
  if (out.size() > 2000) out = out.substr(out.size() - 2000);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty()) return "(no output)";
  for (std::size_t p = out.find('\n'); p != std::string::npos; p = out.find('\n', p))
    out.replace(p, 1, " | ");
  return out;
}

// `chars` random lowercase hex digits.
inline std::string random_hex(std::size_t chars) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  out.reserve(chars);
  while (out.size() < chars) {
    unsigned v = rd();
    for (int i = 0; i < 8 && out.size() < chars; ++i, v >>= 4) out.push_back(kHex[v & 0xF]);
  }
  return out;
}

// Now, as RFC 3339 UTC to the second.
inline std::string now_rfc3339() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace modhost::backend
