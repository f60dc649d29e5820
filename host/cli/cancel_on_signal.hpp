// Cancels a running engine call (a module, a Starlark run) on SIGINT or
// SIGTERM, for the CLI's long verbs.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "engine/api.hpp"

namespace modhost::cli {

// Cancels on SIGINT/SIGTERM. A handler (whichever thread
// takes the signal: a daemon's client has threads of its own) writes to a
// pipe that one waiter thread reads.
class CancelOnSignal {
 public:
  explicit CancelOnSignal(engine::CancelToken& token) {
    if (::pipe2(pipe_, O_CLOEXEC) != 0) return;
    write_end_ = pipe_[1];
    struct sigaction sa {};
    sa.sa_handler = [](int sig) {
      char c = static_cast<char>(sig);
      (void)!::write(write_end_, &c, 1);
    };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
    waiter_ = std::thread([this, &token] {
      char c = 0;
      while (::read(pipe_[0], &c, 1) < 0 && errno == EINTR) {
      }
      if (c != 0) token.cancel();  // 0: done
    });
  }
  ~CancelOnSignal() {
    if (!waiter_.joinable()) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    char c = 0;
    (void)!::write(pipe_[1], &c, 1);
    waiter_.join();
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }

 private:
  static inline int write_end_ = -1;
  int pipe_[2] = {-1, -1};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  std::thread waiter_;
};

}  // namespace modhost::cli
