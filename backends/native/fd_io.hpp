// Whole reads and writes on a descriptor, for the native backend's stages
// (stage3 is static: no dependencies beyond the C++ library).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>

namespace modhost::backend::native {

// Writes all of `s` (retrying short writes); gives up quietly on an error:
// the reader sees the pipe end instead.
inline void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

// Reads until end of file (or an error).
inline std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// Now, as RFC 3339 UTC to the second.
inline std::string now_rfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace modhost::backend::native
