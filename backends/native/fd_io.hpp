// Whole reads and writes on a descriptor, for the native backend's stages
// (stage3 is static: no dependencies beyond the C++ library).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>

#include "backends/common.hpp"

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

using backend::now_rfc3339;  // backends/common.hpp

}  // namespace modhost::backend::native
