// modhost-spawn: stage2 of the native backend. A small single-threaded
// program the host (stage1) starts for each service; it makes the
// container and then stays as its shim.
//
//   host (stage1) --exec--> modhost-spawn --clone(new pid, mount, uts, ipc,
//   net namespaces)--> child --pivot_root, mounts, caps--> exec modhost-init
//   (stage3, PID 1) --> the service's program
//
// The parent half, once the child runs, is the shim: it reaps the container's
// PID 1 and records its exit code (and whether the kernel's OOM killer
// struck), and forwards the service's published ports (tcp and udp) from
// 127.0.0.1.
//
// Descriptors on entry: 3 = the spec (records, see launcher.cpp),
// 4 = the report pipe to stage1 ("pid N", "port P/tcp HOSTPORT", then
// stage3's "started PID" or an "error MESSAGE" line).
//
// `modhost-spawn delete-link NAME...` is its other use: deleting links in the
// background (see delete_links_detached).
//
// The parts: spawn_container.cpp (the child), spawn_forward.cpp (the
// shim's port forwarding); this file holds the shim's loop and exit record
// and main.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <list>
#include <string>
#include <vector>

#include "backends/native/fd_io.hpp"
#include "backends/native/netlink.hpp"
#include "backends/native/records.hpp"
#include "backends/native/spawn.hpp"

namespace modhost::backend::native::spawn {

// Reports why the container could not be made and ends this process.
[[noreturn]] void fail(const std::string& what, int err) {
  write_all(kReportFd,
            "error " + what + (err != 0 ? std::string(": ") + std::strerror(err) : std::string()) + "\n");
  ::_exit(1);
}

void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

void check(const modhost::Status& s) {
  if (!s.ok()) fail(s.error().message(), 0);
}

}  // namespace modhost::backend::native::spawn

namespace {

using namespace modhost::backend::native;
using namespace modhost::backend::native::spawn;

// The kernel's count of OOM kills in the service's memory cgroup.
long oom_kills(const Records& spec) {
  const std::string file = record(spec, "oom_file");
  if (file.empty()) return 0;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::string text = read_all(fd);
  ::close(fd);
  const std::string key = record(spec, "oom_key", "oom_kill") + " ";
  for (std::size_t pos = 0; (pos = text.find(key, pos)) != std::string::npos; pos += key.size()) {
    if (pos == 0 || text[pos - 1] == '\n') return std::atol(text.c_str() + pos + key.size());
  }
  return 0;
}

[[noreturn]] void shim(const Records& spec, pid_t child, std::vector<Listener> listeners, int sfd) {
  const std::string ip = record(spec, "ip");
  const long oom_before = oom_kills(spec);
  std::list<Link> links;
  std::list<UdpFlow> flows;
  int status = 0;
  while (true) {
    std::vector<pollfd> fds{{sfd, POLLIN, 0}};
    for (const auto& l : listeners) fds.push_back({l.fd, POLLIN, 0});
    for (const auto& f : flows) fds.push_back({f.upstream, POLLIN, 0});
    for (auto& k : links) {
      if (k.connecting) {
        fds.push_back({k.client, 0, 0});
        fds.push_back({k.upstream, POLLOUT, 0});
        continue;
      }
      short ce = 0, ue = 0;
      if (!k.up.eof && k.up.buf.size() < 65536) ce |= POLLIN;
      if (!k.down.buf.empty()) ce |= POLLOUT;
      if (!k.down.eof && k.down.buf.size() < 65536) ue |= POLLIN;
      if (!k.up.buf.empty()) ue |= POLLOUT;
      fds.push_back({k.client, ce, 0});
      fds.push_back({k.upstream, ue, 0});
    }
    // With UDP flows, wake once a second to forget idle ones.
    if (::poll(fds.data(), fds.size(), flows.empty() ? -1 : 1000) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si) && si.ssi_signo == SIGCHLD) {
        if (::waitpid(child, &status, WNOHANG) == child) break;
      }
    }
    // UDP flows, then TCP links (every one was polled), then the listeners'
    // new ones.
    std::size_t i = 1 + listeners.size();
    const auto now = std::chrono::steady_clock::now();
    for (UdpFlow& f : flows) {
      // POLLERR too: an ICMP "port unreachable" is pending until read, and
      // would wake poll at once forever.
      if (fds[i++].revents & (POLLIN | POLLERR)) forward_udp_out(f);
      if (now - f.last > kUdpIdle) {
        ::close(f.upstream);
        f.upstream = -1;
      }
    }
    flows.remove_if([](const UdpFlow& f) { return f.upstream < 0; });
    for (Link& k : links) {
      const short ce = fds[i].revents, ue = fds[i + 1].revents;
      i += 2;
      bool broken = false;
      if (k.connecting) {
        if (ue & (POLLOUT | POLLERR | POLLHUP)) {
          int err = 0;
          socklen_t len = sizeof err;
          ::getsockopt(k.upstream, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0)
            broken = true;
          else
            k.connecting = false;
        }
        if (ce & (POLLERR | POLLHUP)) broken = true;
      } else {
        broken = !pump(k.client, k.upstream, k.up, ce, ue) || !pump(k.upstream, k.client, k.down, ue, ce) ||
                 ((ce | ue) & POLLERR);
      }
      if (broken || (k.up.shut && k.down.shut)) {
        ::close(k.client);
        ::close(k.upstream);
        k.client = k.upstream = -1;
      }
    }
    i = 1;
    for (const auto& l : listeners) {
      if (!(fds[i++].revents & POLLIN)) continue;
      if (l.udp) {
        forward_udp_in(l, ip, flows);
        continue;
      }
      const int c = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) {
        // Out of descriptors: the listener stays readable; do not spin.
        if (errno == EMFILE || errno == ENFILE) ::usleep(10000);
        continue;
      }
      const int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      const sockaddr_in to = service_address(ip, l.port);
      if (u < 0 ||
          (::connect(u, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
        ::close(c);
        if (u >= 0) ::close(u);
        continue;
      }
      links.push_back(Link{c, u, true, {}, {}});
    }
    links.remove_if([](const Link& k) { return k.client < 0; });
  }
  // The container's PID 1 is gone (and with it every process of the
  // container): record how it ended, for stage1.
  int code = 255;
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
  const bool oom = oom_kills(spec) > oom_before;
  // As events of the enclave first (names are [a-z0-9-], nothing to
  // escape), then the exit record: whoever sees the record sees the events.
  const std::string events = record(spec, "events");
  const int efd =
      events.empty() ? -1 : ::open(events.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (efd >= 0) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    const std::string head = "{\"timeNano\":" + std::to_string(ns) + ",\"kind\":\"" + record(spec, "kind") +
                             "\",\"subject\":\"" + record(spec, "name") + "\",\"action\":\"";
    std::string lines;
    if (oom) lines += head + "oom\",\"attributes\":{}}\n";
    lines += head + "die\",\"attributes\":{\"exitCode\":\"" + std::to_string(code) + "\"}}\n";
    write_all(efd, lines);
    ::close(efd);
  }
  const std::string exit_file = record(spec, "exit_file");
  const std::string tmp = exit_file + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    write_all(fd,
              encode_records(
                  {{"code", std::to_string(code)}, {"oom", oom ? "1" : "0"}, {"finished", now_rfc3339()}}));
    ::fsync(fd);
    ::close(fd);
    ::rename(tmp.c_str(), exit_file.c_str());
  }
  ::_exit(0);
}

// `modhost-spawn delete-link NAME...`: deletes the native backend's links in
// the background. The kernel takes tens of milliseconds to unregister a
// link; the host starts this, which forks and returns at once, and the
// child (reparented to init) waits for the kernel, one link after another.
int delete_links_detached(int count, char** names) {
  for (int i = 0; i < count; ++i) {
    if (std::strncmp(names[i], "mh", 2) != 0) return 2;  // only links the backend names
  }
  const pid_t child = ::fork();
  if (child != 0) return child > 0 ? 0 : 1;
  ::setsid();
  int failed = 0;
  for (int i = 0; i < count; ++i) failed += netlink::delete_link(names[i]).ok() ? 0 : 1;
  ::_exit(failed == 0 ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "delete-link") == 0) return delete_links_detached(argc - 2, argv + 2);
  const Records spec = decode_records(read_all(kSpecFd));
  ::close(kSpecFd);
  ::prctl(PR_SET_NAME, "modhost-shim");

  // 1. Out of the caller's session: a Ctrl-C at its terminal, or its exit,
  //    does not reach the container.
  ::setsid();
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);

  // 2. What the child needs from the host's view: stage3's binary (on a
  //    read-only mount), the log file, the exec socket, the network
  //    namespace to join.
  const int init_fd = read_only_binary(record(spec, "init"));
  check(init_fd >= 0, "cannot make a read-only mount of " + record(spec, "init"));
  const int log_fd = ::open(record(spec, "log").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  check(log_fd >= 0, "cannot open the log file " + record(spec, "log"));
  const std::string ctl = record(spec, "ctl");
  const int ctl_fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  check(ctl_fd >= 0, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ctl.size() >= sizeof addr.sun_path) fail("exec socket path too long: " + ctl, 0);
  std::memcpy(addr.sun_path, ctl.c_str(), ctl.size() + 1);
  ::unlink(ctl.c_str());
  check(::bind(ctl_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "cannot bind " + ctl);
  ::chmod(ctl.c_str(), 0600);
  check(::listen(ctl_fd, 16) == 0, "listen");
  const std::string net = record(spec, "net", "own");
  int join_fd = -1;
  if (net == "join") {
    const std::string ns = "/proc/" + record(spec, "join_pid") + "/ns/net";
    join_fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
    check(join_fd >= 0, "cannot open " + ns);
  }
  int go[2];
  check(::pipe2(go, O_CLOEXEC) == 0, "pipe");

  // 3. The child, in new pid, mount, uts, ipc and (unless it joins one)
  //    network namespaces.
  unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (net != "join") flags |= CLONE_NEWNET;
  const long child = ::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
  check(child >= 0, "clone");
  if (child == 0) {
    ::close(go[1]);
    ::sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    container(spec, go[0], init_fd, ctl_fd, log_fd, join_fd);
  }
  ::close(go[0]);
  ::close(init_fd);
  ::close(ctl_fd);
  ::close(log_fd);
  if (join_fd >= 0) ::close(join_fd);
  const pid_t pid = static_cast<pid_t>(child);
  const int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
  check(sfd >= 0, "signalfd");

  // 4. Its network link: a veth pair, one end on the enclave's bridge, the
  //    other moved into the child's namespace (it names it eth0).
  if (net == "own") {
    const std::string veth = record(spec, "veth"), peer = record(spec, "peer");
    // The container's MAC address follows from its IP address (as Docker
    // does): a service that gets the address of a removed one also gets its
    // MAC, so the neighbour entries the host and the other services still
    // hold for that address stay right (else connections to it wait up to
    // ~30 s for them to expire).
    in_addr a{};
    std::string mac;
    if (::inet_pton(AF_INET, record(spec, "ip").c_str(), &a) == 1) {
      const auto* b = reinterpret_cast<const unsigned char*>(&a.s_addr);
      mac = {'\x02',
             '\x6d',
             static_cast<char>(b[0]),
             static_cast<char>(b[1]),
             static_cast<char>(b[2]),
             static_cast<char>(b[3])};
    }
    // The kernel tears a dead container's network namespace down in the
    // background: the veth of this service's previous run may still exist.
    modhost::Status s = netlink::delete_link(veth);
    if (s.ok()) s = netlink::create_veth(veth, peer, pid, mac);
    if (s.ok()) s = netlink::set_master(veth, record(spec, "bridge"));
    if (s.ok()) s = netlink::set_up(veth);
    if (!s.ok()) {
      ::kill(pid, SIGKILL);
      (void)netlink::delete_link(veth);
      fail(s.error().message(), 0);
    }
  }

  // 5. Its published ports: a socket on 127.0.0.1 at a free port each (a
  //    TCP listener, or a UDP socket).
  std::vector<Listener> listeners;
  std::string ports_report;
  for (const std::string& p : all_records(spec, "port")) {
    const int inner = std::atoi(p.c_str());
    const bool udp = p.size() > 4 && p.compare(p.size() - 4, 4, "/udp") == 0;
    const int fd = ::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        (!udp && ::listen(fd, 128) != 0) || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      const int err = errno;
      ::kill(pid, SIGKILL);
      fail("cannot publish port " + p, err);
    }
    listeners.push_back(Listener{fd, inner, udp});
    ports_report += "port " + p + " " + std::to_string(ntohs(a.sin_port)) + "\n";
  }

  // 6. Go. The report pipe then belongs to stage3, which says whether the
  //    service's program started.
  write_all(kReportFd, "pid " + std::to_string(pid) + "\n" + ports_report);
  check(::write(go[1], "g", 1) == 1, "cannot wake the container");
  ::close(go[1]);
  ::close(kReportFd);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
  }
  ::chdir("/");
  shim(spec, pid, std::move(listeners), sfd);
}
