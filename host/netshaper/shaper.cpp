#include "netshaper/shaper.hpp"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "netshaper/config.hpp"
#include "netshaper/nfqueue.hpp"
#include "netshaper/profile.hpp"
#include "netshaper/scheduler.hpp"

namespace modhost::netshaper {

namespace {

// Packets the kernel holds per queue before it drops (no fail-open: a full
// queue loses packets, as a full netem queue does).
constexpr std::uint32_t kQueueMaxLen = 65536;
// Datagrams read from one socket per loop turn, so that due packets and other
// namespaces are not starved by a busy one.
constexpr int kReadsPerTurn = 256;

Status write_atomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return errno_failure("create " + tmp);
  auto fail = [&](const std::string& what) {
    Status st = errno_failure(what);
    ::unlink(tmp.c_str());
    return st;
  };
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write " + tmp);
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd.release()) != 0) return fail("close " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename " + tmp + " to " + path);
  return Status::success();
}

// Removes the pid file if it still names us (a newer shaper may own it now).
void remove_pid_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno != ENOENT) log_line(errno_failure("open " + path).error);
    return;
  }
  char buf[32] = {};
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n < 0) {
    log_line(errno_failure("read " + path).error);
    return;
  }
  if (std::string(buf, static_cast<std::size_t>(n)) != std::to_string(::getpid())) return;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) log_line(errno_failure("remove " + path).error);
}

std::string plural(std::size_t n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

// The shaped queues of one process's network namespace.
struct Namespace {
  std::uint64_t key = 0;  // names it in the scheduler; never reused
  int pid = 0;
  UniqueFd pidfd;  // readable once the process has exited
  std::unique_ptr<QueueSocket> socket;
  std::map<std::uint16_t, Sampler> queues;
  bool overflow_logged = false;
  bool verdict_error_logged = false;
  bool refusal_logged = false;

  std::string name() const { return "namespace of pid " + std::to_string(pid); }
};

class Shaper {
 public:
  Shaper(const Options& options, UniqueFd home_netns, int signal_fd)
      : options_(options), home_netns_(std::move(home_netns)), signal_fd_(signal_fd) {}

  Status start(const Config& config);
  int loop();
  // Gives every held packet its verdict and closes every socket.
  void shut_down();
  std::uint64_t generation() const { return generation_; }
  std::string summary() const;
  std::string totals() const {
    return "in all " + std::to_string(delayed_) + " delayed, " + std::to_string(dropped_) + " dropped";
  }

 private:
  Status open_namespace(const NamespaceConfig& nc, std::size_t index, std::unique_ptr<Namespace>& out);
  PacketHandler handler(Namespace& ns) {
    return [this, &ns](std::uint16_t queue, std::uint32_t id) { on_packet(ns, queue, id); };
  }
  void on_packet(Namespace& ns, std::uint16_t queue, std::uint32_t id);
  void verdict(Namespace& ns, std::uint16_t queue, std::uint32_t id, int verdict);
  void flush(Namespace& ns);
  void release_due();
  // Accepts what is held for `ns` (only `queue` if given) now, as a way back.
  void accept_held(Namespace& ns, std::optional<std::uint16_t> queue = std::nullopt);
  // The process is gone: its packets go with its namespace.
  void forget(std::uint64_t key);
  void read_socket(Namespace& ns);
  // Reads everything the kernel has handed over so far: what an unbind or a
  // close would otherwise drop.
  void drain(Namespace& ns);
  void reload();
  Status apply(const Config& next);
  Namespace* find_pid(int pid);
  std::uint64_t seed_for(std::size_t ns_index, std::uint16_t queue) const {
    return queue_seed(seed_, ns_index, queue);
  }

  Options options_;
  UniqueFd home_netns_;
  int signal_fd_;
  std::map<std::uint64_t, std::unique_ptr<Namespace>> spaces_;
  ReleaseScheduler held_;
  std::uint64_t next_key_ = 1;
  std::uint64_t seed_ = 0;
  std::uint64_t generation_ = 0;
  std::uint64_t delayed_ = 0, dropped_ = 0;
};

Status Shaper::open_namespace(const NamespaceConfig& nc, std::size_t index, std::unique_ptr<Namespace>& out) {
  auto ns = std::make_unique<Namespace>();
  ns->key = next_key_++;
  ns->pid = nc.pid;
  std::string pid = std::to_string(nc.pid);
  // The pidfd first: it pins this very process, so the namespace opened next
  // is the one of the process we watch, unless it has exited meanwhile.
  ns->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, nc.pid, 0)));
  if (!ns->pidfd) {
    if (errno == ESRCH) return Status::failure("process " + pid + " does not exist");
    return errno_failure("pidfd_open " + pid);
  }
  std::string ns_path = "/proc/" + pid + "/ns/net";
  UniqueFd netns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return errno_failure("cannot enter the network namespace: open " + ns_path);
  pollfd p{ns->pidfd.get(), POLLIN, 0};
  int ready = ::poll(&p, 1, 0);
  if (ready < 0) return errno_failure("poll pidfd");
  if (ready > 0) return Status::failure("process " + pid + " has exited");
  if (Status st = QueueSocket::open_in(netns.get(), home_netns_.get(), ns->socket); !st.ok()) {
    return Status::failure("cannot enter the network namespace: " + st.error);
  }
  for (const auto& q : nc.queues) {
    // The sampler exists before the bind: a packet may come with the ack.
    ns->queues.emplace(q.num, Sampler(q.profile, seed_for(index, q.num)));
    if (Status st = ns->socket->bind(q.num, kQueueMaxLen, handler(*ns)); !st.ok()) return st;
  }
  out = std::move(ns);
  return Status::success();
}

Status Shaper::start(const Config& config) {
  seed_ = config.seed ? *config.seed : (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  for (std::size_t i = 0; i < config.namespaces.size(); ++i) {
    const auto& nc = config.namespaces[i];
    std::unique_ptr<Namespace> ns;
    if (Status st = open_namespace(nc, i, ns); !st.ok()) {
      return Status::failure("namespaces[" + std::to_string(i) + "] (pid " + std::to_string(nc.pid) +
                             "): " + st.error);
    }
    spaces_.emplace(ns->key, std::move(ns));
  }
  generation_ = config.generation;
  return Status::success();
}

std::string Shaper::summary() const {
  std::size_t queues = 0;
  for (const auto& [key, ns] : spaces_) queues += ns->queues.size();
  return plural(queues, "queue") + " in " + plural(spaces_.size(), "namespace");
}

void Shaper::on_packet(Namespace& ns, std::uint16_t queue, std::uint32_t id) {
  auto it = ns.queues.find(queue);
  if (it == ns.queues.end()) {
    // Bound a moment ago or about to be unbound: let it pass.
    verdict(ns, queue, id, NF_ACCEPT);
    return;
  }
  Decision d = it->second.sample();
  if (d.lost) {
    ++dropped_;
    verdict(ns, queue, id, NF_DROP);
    return;
  }
  ++delayed_;
  held_.push({Clock::now() + d.delay, ns.key, queue, id});
}

void Shaper::verdict(Namespace& ns, std::uint16_t queue, std::uint32_t id, int verdict) {
  if (Status st = ns.socket->add_verdict(queue, id, verdict); !st.ok() && !ns.verdict_error_logged) {
    ns.verdict_error_logged = true;
    log_line(ns.name() + ": " + st.error + " (logged once)");
  }
}

void Shaper::flush(Namespace& ns) {
  if (Status st = ns.socket->flush(); !st.ok() && !ns.verdict_error_logged) {
    ns.verdict_error_logged = true;
    log_line(ns.name() + ": " + st.error + " (logged once)");
  }
  if (std::uint64_t n = ns.socket->take_refused_verdicts(); n > 0 && !ns.refusal_logged) {
    ns.refusal_logged = true;
    log_line(ns.name() + ": the kernel refused " + plural(n, "verdict") + ": " +
             std::strerror(ns.socket->last_refusal_errno()) + " (logged once)");
  }
}

void Shaper::release_due() {
  for (const Held& h : held_.pop_due(Clock::now())) {
    auto it = spaces_.find(h.namespace_key);
    if (it == spaces_.end()) continue;
    verdict(*it->second, h.queue, h.packet_id, NF_ACCEPT);
  }
}

void Shaper::accept_held(Namespace& ns, std::optional<std::uint16_t> queue) {
  auto taken = held_.take_if(
      [&](const Held& h) { return h.namespace_key == ns.key && (!queue || h.queue == *queue); });
  for (const Held& h : taken) verdict(ns, h.queue, h.packet_id, NF_ACCEPT);
  flush(ns);
}

void Shaper::forget(std::uint64_t key) {
  held_.take_if([&](const Held& h) { return h.namespace_key == key; });
  spaces_.erase(key);
}

void Shaper::shut_down() {
  for (auto& [key, ns] : spaces_) {
    ns->queues.clear();  // from now on every packet passes at once
    drain(*ns);
    accept_held(*ns);
  }
  spaces_.clear();
}

Namespace* Shaper::find_pid(int pid) {
  for (auto& [key, ns] : spaces_) {
    if (ns->pid == pid) return ns.get();
  }
  return nullptr;
}

void Shaper::read_socket(Namespace& ns) {
  QueueSocket::ReadResult result;
  Status st = ns.socket->read(handler(ns), kReadsPerTurn, result);
  if (!st.ok()) {
    log_line(ns.name() + ": " + st.error + "; no longer shaping it");
    forget(ns.key);
    return;
  }
  if (result == QueueSocket::ReadResult::overflow && !ns.overflow_logged) {
    ns.overflow_logged = true;
    log_line(ns.name() + ": the kernel dropped packets it could not hand over (ENOBUFS, logged once)");
  }
}

void Shaper::drain(Namespace& ns) {
  // Bounded: under a flood, new packets keep coming.
  QueueSocket::ReadResult result = QueueSocket::ReadResult::more;
  for (int turn = 0; turn < 64 && result != QueueSocket::ReadResult::drained; ++turn) {
    if (Status st = ns.socket->read(handler(ns), kReadsPerTurn, result); !st.ok()) return;
  }
}

// Everything that can fail comes first and is undone on failure; then the
// changes that cannot fail: the old config stays whole or the new one is
// wholly in force.
Status Shaper::apply(const Config& next) {
  std::uint64_t old_seed = seed_;
  if (next.seed) seed_ = *next.seed;
  std::vector<std::unique_ptr<Namespace>> opened;
  std::vector<std::pair<Namespace*, std::uint16_t>> bound;  // new queues in kept namespaces
  auto undo = [&](const std::string& where, const Status& st) {
    for (auto& [ns, num] : bound) {
      if (Status u = ns->socket->unbind(num, handler(*ns)); !u.ok()) log_line(ns->name() + ": " + u.error);
    }
    for (auto& ns : opened) {
      ns->queues.clear();
      drain(*ns);
      accept_held(*ns);
    }
    seed_ = old_seed;
    return Status::failure(where + ": " + st.error);
  };
  for (std::size_t i = 0; i < next.namespaces.size(); ++i) {
    const auto& nc = next.namespaces[i];
    std::string where = "namespaces[" + std::to_string(i) + "] (pid " + std::to_string(nc.pid) + ")";
    if (Namespace* ns = find_pid(nc.pid)) {
      for (const auto& q : nc.queues) {
        if (ns->queues.count(q.num)) continue;
        if (Status st = ns->socket->bind(q.num, kQueueMaxLen, handler(*ns)); !st.ok()) return undo(where, st);
        bound.emplace_back(ns, q.num);
      }
    } else {
      std::unique_ptr<Namespace> fresh;
      if (Status st = open_namespace(nc, i, fresh); !st.ok()) return undo(where, st);
      opened.push_back(std::move(fresh));
    }
  }

  std::set<int> wanted;
  for (std::size_t i = 0; i < next.namespaces.size(); ++i) {
    const auto& nc = next.namespaces[i];
    wanted.insert(nc.pid);
    Namespace* ns = find_pid(nc.pid);
    if (!ns) continue;
    std::map<std::uint16_t, const Profile*> profiles;
    for (const auto& q : nc.queues) profiles.emplace(q.num, &q.profile);
    for (auto it = ns->queues.begin(); it != ns->queues.end();) {
      auto p = profiles.find(it->first);
      if (p != profiles.end()) {
        it->second.set_profile(*p->second);  // held packets keep their release times
        ++it;
        continue;
      }
      std::uint16_t num = it->first;
      it = ns->queues.erase(it);
      // Verdicts before the unbind: the kernel drops what an unbound queue
      // holds. Without its sampler, what is still unread passes at once.
      drain(*ns);
      accept_held(*ns, num);
      if (Status st = ns->socket->unbind(num, handler(*ns)); !st.ok()) log_line(ns->name() + ": " + st.error);
    }
    for (const auto& q : nc.queues) {
      if (!ns->queues.count(q.num)) ns->queues.emplace(q.num, Sampler(q.profile, seed_for(i, q.num)));
    }
  }
  for (auto it = spaces_.begin(); it != spaces_.end();) {
    if (wanted.count(it->second->pid)) {
      ++it;
      continue;
    }
    it->second->queues.clear();
    drain(*it->second);
    accept_held(*it->second);
    it = spaces_.erase(it);
  }
  for (auto& ns : opened) spaces_.emplace(ns->key, std::move(ns));
  generation_ = next.generation;
  return Status::success();
}

void Shaper::reload() {
  ConfigResult r = load_config(options_.config_path);
  std::string keeping = "keeping generation " + std::to_string(generation_);
  if (!r.config) {
    log_line("reload: " + r.error + "; " + keeping);
    return;
  }
  if (Status st = apply(*r.config); !st.ok()) {
    log_line("reload to generation " + std::to_string(r.config->generation) + " failed: " + st.error + "; " +
             keeping);
    return;
  }
  if (Status st = write_atomically(options_.applied_file, std::to_string(generation_)); !st.ok()) {
    log_line("generation " + std::to_string(generation_) + " applied but not recorded: " + st.error);
    return;
  }
  log_line("generation " + std::to_string(generation_) + " applied: " + summary());
}

int Shaper::loop() {
  std::vector<pollfd> fds;
  std::vector<std::uint64_t> keys;
  for (;;) {
    if (spaces_.empty()) {
      log_line("no namespace left to shape; exiting; " + totals());
      return kExitOk;
    }
    fds.assign(1, pollfd{signal_fd_, POLLIN, 0});
    keys.clear();
    for (auto& [key, ns] : spaces_) {
      fds.push_back({ns->socket->fd(), POLLIN, 0});
      fds.push_back({ns->pidfd.get(), POLLIN, 0});
      keys.push_back(key);
    }
    timespec timeout{};
    timespec* wait = nullptr;
    if (auto next = held_.next_release()) {
      auto left = std::max(Clock::duration::zero(), *next - Clock::now());
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      timeout.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      timeout.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      wait = &timeout;
    }
    if (::ppoll(fds.data(), fds.size(), wait, nullptr) < 0) {
      if (errno == EINTR) continue;
      log_line(errno_failure("ppoll").error);
      shut_down();
      return kExitRuntimeError;
    }

    bool reload_wanted = false, stop = false;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      for (;;) {
        ssize_t n = ::read(signal_fd_, &si, sizeof si);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n != static_cast<ssize_t>(sizeof si)) {
          log_line(errno_failure("read signalfd").error);
          shut_down();
          return kExitRuntimeError;
        }
        if (si.ssi_signo == SIGHUP) reload_wanted = true;
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) stop = true;
      }
    }

    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto it = spaces_.find(keys[i]);
      if (it == spaces_.end()) continue;
      Namespace& ns = *it->second;
      if (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) {
        log_line("process " + std::to_string(ns.pid) + " has exited; no longer shaping its namespace");
        forget(keys[i]);
        continue;
      }
      if (fds[1 + 2 * i].revents & (POLLIN | POLLERR)) read_socket(ns);
    }
    release_due();
    for (auto& [key, ns] : spaces_) flush(*ns);

    if (stop) {
      log_line("stopping: letting " + plural(held_.size(), "held packet") + " through; " + totals());
      shut_down();
      return kExitOk;
    }
    if (reload_wanted) reload();
  }
}

}  // namespace

void log_line(const std::string& line) { std::fprintf(stderr, "modhost-netshaper: %s\n", line.c_str()); }

int run(const Options& options) {
  // 1. Signals become readable events before anything can be interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    log_line(errno_failure("sigprocmask").error);
    return kExitStartError;
  }
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd) {
    log_line(errno_failure("signalfd").error);
    return kExitStartError;
  }
  // 2. Wake up when a packet is due, not up to 50 µs later (the default slack).
  if (::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) != 0) log_line(errno_failure("timer slack").error);

  // 3. The pid file, so that the launcher can signal us from now on.
  if (Status st = write_atomically(options.pid_file, std::to_string(::getpid())); !st.ok()) {
    log_line("cannot write the pid file: " + st.error);
    return kExitStartError;
  }
  auto fail = [&](const std::string& line) {
    log_line(line);
    remove_pid_file(options.pid_file);
    return kExitStartError;
  };

  // 4. The config, then the queues of every namespace.
  ConfigResult config = load_config(options.config_path);
  if (!config.config) return fail("bad config: " + config.error);
  UniqueFd home(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return fail(errno_failure("cannot open our own network namespace: /proc/self/ns/net").error);
  Shaper shaper(options, std::move(home), signal_fd.get());
  if (Status st = shaper.start(*config.config); !st.ok()) {
    shaper.shut_down();
    return fail("cannot start: " + st.error);
  }

  // 5. Only now, with every queue bound, the generation is in force.
  if (Status st = write_atomically(options.applied_file, std::to_string(shaper.generation())); !st.ok()) {
    shaper.shut_down();
    return fail("cannot write the applied file: " + st.error);
  }
  log_line("generation " + std::to_string(shaper.generation()) + " applied: " + shaper.summary());

  int code = shaper.loop();
  remove_pid_file(options.pid_file);
  return code;
}

}  // namespace modhost::netshaper
