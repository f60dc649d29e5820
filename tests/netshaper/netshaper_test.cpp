// modhost-netshaper against the real kernel. Each test makes network
// namespaces of its own (a child process that unshares and sleeps holds each),
// sends traffic to 127.0.0.2 there to an NFQUEUE queue with iptables, starts
// the shaper on it and measures from a thread that has entered the namespace.
// Nothing outlives a test: the namespaces, with their rules, die with their
// child, and every process is killed and reaped by a destructor, also when an
// assertion fails. Needs root, iptables and nfnetlink_queue; skipped without.
//
// What the kernel does on loopback: a connect from the namespace to
// 127.0.0.2 leaves from 127.0.0.1 (the local route's preferred source), so of
// the handshake only the SYN (and the final ACK, which connect() does not
// wait for) matches "-d 127.0.0.2": connect() takes one delay, not two.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/process_util.hpp"

using modhost::test::run_command;
using namespace std::chrono_literals;
using Ms = std::chrono::duration<double, std::milli>;

namespace {

const std::string kShaper = std::string(MODHOST_BIN_DIR) + "/modhost-netshaper";
constexpr int kQueue = 19785;

std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1 : v[v.size() / 2];
}

// A network namespace held by a child process that sleeps in it, lo up.
class TestNamespace {
 public:
  TestNamespace() {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      char ok = ::unshare(CLONE_NEWNET) == 0 && lo_up() ? 1 : 0;
      if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char ok = 0;
    if (pid_ < 0 || ::read(ready[0], &ok, 1) != 1 || !ok) kill();
    ::close(ready[0]);
  }
  ~TestNamespace() { kill(); }
  TestNamespace(const TestNamespace&) = delete;
  TestNamespace& operator=(const TestNamespace&) = delete;

  bool ok() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // Kills the holder; the namespace goes once nothing else holds it.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // Runs argv inside the namespace; "" on success, else what went wrong.
  std::string run(const std::vector<std::string>& argv) const {
    std::vector<std::string> full = {find_program("nsenter"), "-t", std::to_string(pid_), "-n"};
    full.insert(full.end(), argv.begin(), argv.end());
    auto r = run_command(full);
    if (r.exit_code == 0) return "";
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    return cmd + ": exit " + std::to_string(r.exit_code) + ": " + r.err;
  }

  // The rule the engine installs: traffic to 127.0.0.2 to queue `queue`.
  std::string queue_to(int queue) const {
    return run({find_program("iptables"), "-A", "OUTPUT", "-d", "127.0.0.2/32", "-j", "NFQUEUE",
                "--queue-num", std::to_string(queue), "--queue-bypass"});
  }

  // Runs f in a thread that has entered the namespace.
  void enter(const std::function<void()>& f) const {
    std::thread t([&] {
      int fd = ::open(("/proc/" + std::to_string(pid_) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        ADD_FAILURE() << "cannot enter the namespace of " << pid_ << ": " << std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return;
      }
      ::close(fd);
      f();
    });
    t.join();
  }

 private:
  static bool lo_up() {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    ::close(s);
    return ok;
  }

  pid_t pid_ = -1;
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in address(const char* ip, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &sa.sin_addr);
  return sa;
}

std::uint16_t local_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A TCP listener on every address of the namespace, port chosen by the kernel.
int tcp_listener() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa = address("0.0.0.0", 0);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(fd, 512), 0) << std::strerror(errno);
  return fd;
}

// How long connect() takes, or nullopt when it does not finish in `timeout`.
std::optional<double> connect_ms(const char* ip, std::uint16_t port, std::chrono::milliseconds timeout) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in sa = address(ip, port);
  auto t0 = std::chrono::steady_clock::now();
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno != EINPROGRESS) return std::nullopt;
    pollfd p{s.get(), POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return std::nullopt;
  }
  return Ms(std::chrono::steady_clock::now() - t0).count();
}

// Connect times to 127.0.0.1 (never shaped) and 127.0.0.2 (shaped), `n` each.
struct ConnectTimes {
  std::vector<double> plain, shaped;
};

ConnectTimes measure_connects(const TestNamespace& ns, int n) {
  ConnectTimes t;
  ns.enter([&] {
    Socket listener(tcp_listener());
    std::uint16_t port = local_port(listener.get());
    for (int i = 0; i < n; ++i) {
      auto plain = connect_ms("127.0.0.1", port, 2s);
      auto shaped = connect_ms("127.0.0.2", port, 2s);
      t.plain.push_back(plain.value_or(1e9));
      t.shaped.push_back(shaped.value_or(1e9));
    }
  });
  return t;
}

// One queue's profile, as JSON.
struct Queue {
  int num = kQueue;
  long delay_us = 0;
  long jitter_us = 0;
  double loss = 0;
  double correlation = 0;
  const char* distribution = "uniform";

  std::string json() const {
    std::ostringstream o;
    o << R"({"num": )" << num << R"(, "delay_us": )" << delay_us << R"(, "jitter_us": )" << jitter_us
      << R"(, "loss": )" << loss << R"(, "correlation": )" << correlation << R"(, "distribution": ")"
      << distribution << R"("})";
    return o.str();
  }
};

std::string config(std::uint64_t generation,
                   const std::vector<std::pair<pid_t, std::vector<Queue>>>& spaces) {
  std::ostringstream o;
  o << R"({"generation": )" << generation << R"(, "seed": 42, "namespaces": [)";
  for (std::size_t i = 0; i < spaces.size(); ++i) {
    o << (i ? ", " : "") << R"({"pid": )" << spaces[i].first << R"(, "queues": [)";
    for (std::size_t j = 0; j < spaces[i].second.size(); ++j)
      o << (j ? ", " : "") << spaces[i].second[j].json();
    o << "]}";
  }
  o << "]}";
  return o.str();
}

// A running modhost-netshaper, its files in a directory of its own. Killed and
// reaped when it goes out of scope.
class Shaper {
 public:
  explicit Shaper(const std::string& config_text) {
    char tmpl[] = "/tmp/netshaper-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl) ? tmpl : "/tmp";
    config_ = dir_ + "/config.json";
    pid_file_ = dir_ + "/shaper.pid";
    applied_ = dir_ + "/applied";
    err_ = dir_ + "/stderr";
    write_file(config_, config_text);
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 2);
      ::execl(kShaper.c_str(), kShaper.c_str(), "--config", config_.c_str(), "--pid-file", pid_file_.c_str(),
              "--applied-file", applied_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Shaper() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    run_command({find_program("rm"), "-rf", dir_});
  }
  Shaper(const Shaper&) = delete;
  Shaper& operator=(const Shaper&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& pid_file() const { return pid_file_; }
  std::string applied() const { return read_file(applied_); }
  std::string stderr_text() const { return read_file(err_); }
  void rewrite_config(const std::string& text) const { write_file(config_, text); }

  // True once the applied file holds `generation`; false if it exits first
  // or `timeout` passes.
  bool wait_applied(std::uint64_t generation, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (applied() == std::to_string(generation)) return true;
      if (exit_code(0ms)) return false;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // The exit code once it has exited within `timeout`.
  std::optional<int> exit_code(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return code_;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return code_;
      }
      if (r < 0 || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
  }

 private:
  std::string dir_, config_, pid_file_, applied_, err_;
  pid_t pid_ = -1;
  std::optional<int> code_;
};

class NetshaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, iptables, NFQUEUE)";
    if (find_program("iptables").empty() || find_program("nsenter").empty()) {
      GTEST_SKIP() << "needs iptables and nsenter";
    }
    ASSERT_TRUE(ns_.ok()) << "cannot make a network namespace";
    if (std::string err = ns_.queue_to(kQueue); !err.empty()) GTEST_SKIP() << "no NFQUEUE here: " << err;
  }

  TestNamespace ns_;
};

TEST_F(NetshaperTest, DelaysTheShapedDestinationByTheConfiguredDelay) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 100'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  EXPECT_EQ(read_file(shaper.pid_file()), std::to_string(shaper.pid()));

  ConnectTimes t = measure_connects(ns_, 10);
  double added = median(t.shaped) - median(t.plain);
  std::printf("connect: plain median %.3f ms, shaped median %.3f ms, added %.3f ms (configured 100 ms)\n",
              median(t.plain), median(t.shaped), added);
  EXPECT_LT(median(t.plain), 10);
  // The SYN once (see the top of this file): not 0, not twice.
  EXPECT_GT(added, 95);
  EXPECT_LT(added, 140);
  for (double ms : t.shaped) EXPECT_GE(ms, 99.5);
}

TEST_F(NetshaperTest, JitterSpreadsTheDelayWithinItsBounds) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 60'000, .jitter_us = 30'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  ConnectTimes t = measure_connects(ns_, 20);
  auto [lo, hi] = std::minmax_element(t.shaped.begin(), t.shaped.end());
  std::printf("connect with 60 ms ± 30 ms: min %.3f ms, median %.3f ms, max %.3f ms\n", *lo, median(t.shaped),
              *hi);
  EXPECT_GE(*lo, 29.5);
  EXPECT_LE(*hi, 110);  // 90 at most, and some room for a busy machine
  EXPECT_GT(*hi - *lo, 15);
}

TEST_F(NetshaperTest, FullLossTimesConnectOut) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.loss = 100}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  ns_.enter([&] {
    Socket listener(tcp_listener());
    std::uint16_t port = local_port(listener.get());
    EXPECT_TRUE(connect_ms("127.0.0.1", port, 1s));
    // The first SYN and its retransmission after 1 s are both dropped.
    EXPECT_FALSE(connect_ms("127.0.0.2", port, 1500ms));
  });
}

TEST_F(NetshaperTest, LossDropsItsShareOfDatagrams) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.loss = 30}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  constexpr int kSent = 2000;
  int received = 0;
  ns_.enter([&] {
    Socket rx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    int size = 16 << 20;
    ASSERT_EQ(::setsockopt(rx.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size), 0);
    sockaddr_in sa = address("127.0.0.2", 0);
    ASSERT_EQ(::bind(rx.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    sa.sin_port = htons(local_port(rx.get()));
    Socket tx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    char payload[32] = {};
    for (int i = 0; i < kSent; ++i) {
      ASSERT_EQ(::sendto(tx.get(), payload, sizeof payload, 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa),
                static_cast<ssize_t>(sizeof payload));
    }
    pollfd p{rx.get(), POLLIN, 0};
    while (::poll(&p, 1, 500) == 1) {
      if (::recv(rx.get(), payload, sizeof payload, 0) > 0) ++received;
    }
  });
  double lost = 1.0 - static_cast<double>(received) / kSent;
  std::printf("datagrams: %d of %d arrived, %.1f%% lost (configured 30%%)\n", received, kSent, lost * 100);
  // Binomial: the standard deviation of the rate is about 1%.
  EXPECT_NEAR(lost, 0.30, 0.05);
}

TEST_F(NetshaperTest, AFloodDoesNotStopTheShaper) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 20'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  constexpr int kSent = 400'000;
  ns_.enter([&] {
    Socket tx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    // Held packets count against the sender's send buffer: a big one lets
    // the sender outrun the shaper.
    int size = 256 << 20;
    ASSERT_EQ(::setsockopt(tx.get(), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size), 0);
    sockaddr_in sa = address("127.0.0.2", 9);  // nobody listens: only the shaper sees them
    char payload[16] = {};
    int failed = 0, last_errno = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kSent; ++i) {
      if (::sendto(tx.get(), payload, sizeof payload, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa),
                   sizeof sa) < 0) {
        ++failed;
        last_errno = errno;
      }
    }
    std::printf("flood: %d datagrams in %.1f ms, %d refused (%s)\n", kSent,
                Ms(std::chrono::steady_clock::now() - t0).count(), failed, std::strerror(last_errno));
  });
  std::this_thread::sleep_for(500ms);
  std::printf("shaper stderr after the flood:\n%s", shaper.stderr_text().c_str());
  EXPECT_FALSE(shaper.exit_code(0ms));
  double after = median(measure_connects(ns_, 3).shaped);
  EXPECT_GT(after, 19);
  EXPECT_LT(after, 60);
}

TEST_F(NetshaperTest, ReloadAppliesANewConfigAndKeepsTheOldOneWhenTheNewIsBad) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 100'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  EXPECT_GT(median(measure_connects(ns_, 3).shaped), 95);

  shaper.rewrite_config(config(2, {{ns_.pid(), {Queue{.delay_us = 0}}}}));
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  ASSERT_TRUE(shaper.wait_applied(2)) << shaper.stderr_text();
  ConnectTimes fast = measure_connects(ns_, 5);
  std::printf("after reload to 0 ms: shaped median %.3f ms\n", median(fast.shaped));
  EXPECT_LT(median(fast.shaped), 20);

  // A bad config changes nothing: generation 2 stays, in the file and in force.
  shaper.rewrite_config(
      R"({"generation": 3, "namespaces": [{"pid": 1, "queues": [{"num": 1, "loss": 200}]}]})");
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (shaper.stderr_text().find("reload") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(shaper.stderr_text().find("namespaces[0].queues[0].loss: must be between 0 and 100, got 200; "
                                      "keeping generation 2"),
            std::string::npos)
      << shaper.stderr_text();
  EXPECT_EQ(shaper.applied(), "2");
  EXPECT_FALSE(shaper.exit_code(0ms));
  EXPECT_LT(median(measure_connects(ns_, 3).shaped), 20);

  // Back to a delay: the kept queue changes its profile in place.
  shaper.rewrite_config(config(4, {{ns_.pid(), {Queue{.delay_us = 50'000}}}}));
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  ASSERT_TRUE(shaper.wait_applied(4)) << shaper.stderr_text();
  double again = median(measure_connects(ns_, 3).shaped);
  EXPECT_GT(again, 49);
  EXPECT_LT(again, 90);
}

TEST_F(NetshaperTest, ReloadThatCannotBeAppliedKeepsTheOldGeneration) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 50'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  // Valid, but the second namespace cannot be entered: the new queue of the
  // first is unbound again and generation 1 stays.
  shaper.rewrite_config(
      config(2, {{ns_.pid(), {Queue{.delay_us = 50'000}, Queue{.num = kQueue + 1}}}, {gone, {Queue{}}}}));
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  std::string expected = "modhost-netshaper: reload to generation 2 failed: namespaces[1] (pid " +
                         std::to_string(gone) + "): process " + std::to_string(gone) +
                         " does not exist; keeping generation 1";
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (shaper.stderr_text().find(expected) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(shaper.stderr_text().find(expected), std::string::npos) << shaper.stderr_text();
  EXPECT_EQ(shaper.applied(), "1");
  double still = median(measure_connects(ns_, 3).shaped);
  EXPECT_GT(still, 49);
  EXPECT_LT(still, 90);
  // The queue the failed reload bound for a moment is free again.
  Shaper other(config(1, {{ns_.pid(), {Queue{.num = kQueue + 1}}}}));
  EXPECT_TRUE(other.wait_applied(1)) << other.stderr_text();
}

TEST_F(NetshaperTest, ShapesOnInputToo) {
  // On the receiving side (INPUT, after lo or a veth has orphaned the
  // packet) the sender's socket no longer owns what the shaper holds.
  ASSERT_EQ(ns_.run({find_program("iptables"), "-F", "OUTPUT"}), "");
  ASSERT_EQ(ns_.run({find_program("iptables"), "-A", "INPUT", "-d", "127.0.0.2/32", "-j", "NFQUEUE",
                     "--queue-num", std::to_string(kQueue), "--queue-bypass"}),
            "");
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 100'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  ConnectTimes t = measure_connects(ns_, 5);
  double added = median(t.shaped) - median(t.plain);
  EXPECT_GT(added, 95);
  EXPECT_LT(added, 140);
}

TEST_F(NetshaperTest, EmptyConfigIsAppliedAndExits0) {
  Shaper shaper(R"({"generation": 7, "namespaces": []})");
  EXPECT_EQ(shaper.exit_code(5s), 0) << shaper.stderr_text();
  EXPECT_EQ(shaper.applied(), "7");
  EXPECT_FALSE(file_exists(shaper.pid_file()));
}

TEST_F(NetshaperTest, ShapesSeveralNamespacesAndFollowsReloadsThatAddAndRemoveThem) {
  TestNamespace other;
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other.queue_to(kQueue), "");  // the same queue number: queues are per namespace
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 40'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  EXPECT_LT(median(measure_connects(other, 3).shaped), 20);  // not shaped yet

  shaper.rewrite_config(
      config(2, {{ns_.pid(), {Queue{.delay_us = 40'000}}}, {other.pid(), {Queue{.delay_us = 120'000}}}}));
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  ASSERT_TRUE(shaper.wait_applied(2)) << shaper.stderr_text();
  double first = median(measure_connects(ns_, 3).shaped), second = median(measure_connects(other, 3).shaped);
  std::printf("two namespaces: %.3f ms (40 configured), %.3f ms (120 configured)\n", first, second);
  EXPECT_GT(first, 39);
  EXPECT_LT(first, 80);
  EXPECT_GT(second, 119);
  EXPECT_LT(second, 160);

  // The first namespace leaves the config: its queue is unbound, its traffic
  // passes again (--queue-bypass).
  shaper.rewrite_config(config(3, {{other.pid(), {Queue{.delay_us = 120'000}}}}));
  ASSERT_EQ(::kill(shaper.pid(), SIGHUP), 0);
  ASSERT_TRUE(shaper.wait_applied(3)) << shaper.stderr_text();
  EXPECT_LT(median(measure_connects(ns_, 3).shaped), 20);
  EXPECT_GT(median(measure_connects(other, 3).shaped), 119);
}

TEST_F(NetshaperTest, SigtermLetsHeldPacketsThroughAndExits) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 3'000'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  std::optional<double> took;
  ns_.enter([&] {
    Socket listener(tcp_listener());
    std::uint16_t port = local_port(listener.get());
    std::thread stopper([&] {
      std::this_thread::sleep_for(300ms);
      ::kill(shaper.pid(), SIGTERM);
    });
    took = connect_ms("127.0.0.2", port, 2500ms);  // the SYN is held for 3 s unless let through
    stopper.join();
  });
  ASSERT_TRUE(took) << "the held SYN was not let through on SIGTERM";
  std::printf("connect with a 3 s delay, SIGTERM after 300 ms: %.3f ms\n", *took);
  EXPECT_LT(*took, 1000);
  EXPECT_EQ(shaper.exit_code(5s), 0) << shaper.stderr_text();
  EXPECT_FALSE(file_exists(shaper.pid_file()));
}

TEST_F(NetshaperTest, ExitsByItselfWhenTheNamespaceProcessExits) {
  Shaper shaper(config(1, {{ns_.pid(), {Queue{.delay_us = 10'000}}}}));
  ASSERT_TRUE(shaper.wait_applied(1)) << shaper.stderr_text();
  ns_.kill();
  EXPECT_EQ(shaper.exit_code(5s), 0) << shaper.stderr_text();
  EXPECT_FALSE(file_exists(shaper.pid_file()));
  EXPECT_NE(shaper.stderr_text().find("has exited"), std::string::npos) << shaper.stderr_text();
}

TEST_F(NetshaperTest, BadConfigExits2WithOneLine) {
  Shaper shaper(
      R"({"generation": 1, "namespaces": [{"pid": 1, "queues": [{"num": 1, "distribution": "pareto"}]}]})");
  EXPECT_EQ(shaper.exit_code(5s), 2);
  auto err = lines(shaper.stderr_text());
  ASSERT_EQ(err.size(), 1u) << shaper.stderr_text();
  EXPECT_EQ(err[0].rfind("modhost-netshaper: bad config: ", 0), 0u) << err[0];
  EXPECT_NE(err[0].find("namespaces[0].queues[0].distribution: unknown distribution \"pareto\""),
            std::string::npos)
      << err[0];
  EXPECT_FALSE(file_exists(shaper.pid_file()));
  EXPECT_EQ(shaper.applied(), "");
}

TEST_F(NetshaperTest, MissingProcessExits2WithOneLine) {
  // A pid that is not in use: a reaped child's.
  pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  Shaper shaper(config(1, {{gone, {Queue{}}}}));
  EXPECT_EQ(shaper.exit_code(5s), 2);
  auto err = lines(shaper.stderr_text());
  ASSERT_EQ(err.size(), 1u) << shaper.stderr_text();
  EXPECT_EQ(err[0], "modhost-netshaper: cannot start: namespaces[0] (pid " + std::to_string(gone) +
                        "): process " + std::to_string(gone) + " does not exist");
  EXPECT_FALSE(file_exists(shaper.pid_file()));
}

TEST_F(NetshaperTest, QueueBoundByAnotherProgramExits2WithOneLine) {
  Shaper first(config(1, {{ns_.pid(), {Queue{.delay_us = 1000}}}}));
  ASSERT_TRUE(first.wait_applied(1)) << first.stderr_text();
  Shaper second(config(1, {{ns_.pid(), {Queue{.delay_us = 1000}}}}));
  EXPECT_EQ(second.exit_code(5s), 2);
  auto err = lines(second.stderr_text());
  ASSERT_EQ(err.size(), 1u) << second.stderr_text();
  EXPECT_NE(err[0].find("bind queue 19785"), std::string::npos) << err[0];
  std::printf("second shaper on a bound queue: %s\n", err[0].c_str());
  EXPECT_FALSE(file_exists(second.pid_file()));
  EXPECT_FALSE(first.exit_code(0ms)) << "the first one must keep running";
}

TEST(NetshaperCli, HelpAndUsageErrors) {
  auto help = run_command({kShaper, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--applied-file"), std::string::npos) << help.out;
  auto bad = run_command({kShaper, "--config", "x.json"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "modhost-netshaper: --pid-file is required (see --help)\n");
}

}  // namespace
