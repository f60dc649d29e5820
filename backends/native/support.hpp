// Small system helpers of the native backend's host side: whole files,
// JSON record fields, programs run without a shell, and the lock that
// orders changes to the state directory between threads and processes.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::backend::native {

// The whole file, or "" when it cannot be read.
std::string read_file(const std::string& path);
// Written beside, then renamed over PATH: readers see the old or the new.
Status write_file_atomic(const std::string& path, std::string_view data);
std::int64_t now_ns();

// A JSON file's value, or null when it is missing or not JSON.
boost::json::value parse_json_file(const std::string& path);
// A string or integer member of a JSON object, or "" / `fallback`.
std::string str(const boost::json::value& v, std::string_view key);
std::int64_t num(const boost::json::value& v, std::string_view key, std::int64_t fallback = 0);

// A tail of a log file as one line: the error of a service that exited at once.
std::string last_words(const std::string& log_path);

// argv as execve takes it (pointing into `argv`).
std::vector<char*> c_argv(const std::vector<std::string>& argv);
// Runs a program (no shell) and returns its exit code, its output in `out`.
int run_program(const std::vector<std::string>& argv, std::string* out = nullptr);
// Runs a program detached: it is waited for only until it has started (it
// must fork and let its parent half exit at once), with no descriptor of
// ours, so nobody reading our output waits for it.
bool run_detached(const std::vector<std::string>& argv);

// An exclusive lock on a file (between processes) and a mutex (between
// threads: record locks belong to the process).
class DirLock {
 public:
  DirLock(std::mutex& m, const std::string& path) : guard_(m) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0 && errno == ENOENT) {  // clean() removed an empty scope's directory
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    }
    if (fd_ >= 0) {
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      while (::fcntl(fd_, F_SETLKW, &fl) != 0 && errno == EINTR) {
      }
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the record lock
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  std::lock_guard<std::mutex> guard_;
  int fd_ = -1;
};

}  // namespace modhost::backend::native
