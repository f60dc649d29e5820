// The parts of modhost-spawn (stage2 of the native backend; see
// spawn_main.cpp), in their own files: the child that becomes the
// container (spawn_container.cpp) and the shim's port forwarding
// (spawn_forward.cpp). For modhost-spawn alone.
#pragma once

#include <netinet/in.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <list>
#include <string>

#include "backends/native/records.hpp"
#include "modhost/result.hpp"

namespace modhost::backend::native::spawn {

constexpr int kSpecFd = 3;
constexpr int kReportFd = 4;

// Reports why the container could not be made and ends this process.
[[noreturn]] void fail(const std::string& what, int err = errno);
void check(bool ok, const std::string& what);
void check(const modhost::Status& s);

// --- The child (spawn_container.cpp) ---

// Becomes the container (cgroups, namespaces, rootfs, mounts, devices,
// capabilities) and execs stage3 from INIT_FD; never returns.
[[noreturn]] void container(const Records& spec, int go_fd, int init_fd, int ctl_fd, int log_fd, int join_fd);

// Stage3's binary on a read-only mount of its own: a detached clone of a
// bind mount of the file (open_tree), made read-only, held by an O_PATH
// descriptor the child execs from. The container's /proc/1/exe then leads
// to a file on a read-only mount, so nothing in the container can rewrite
// the host's binary through it (CVE-2019-5736); runc does the same. No copy:
// every container shares the host's page cache of the file. -1 with errno
// on failure.
int read_only_binary(const std::string& path);

// --- Port forwarding (spawn_forward.cpp) ---

// One direction of a forwarded connection.
struct Flow {
  std::string buf;
  bool eof = false;   // the reading side ended
  bool shut = false;  // and the writing side was told
};

struct Link {
  int client = -1;
  int upstream = -1;
  bool connecting = true;
  Flow up;    // client -> upstream
  Flow down;  // upstream -> client
};

struct Listener {
  int fd = -1;
  int port = 0;  // inside the container
  bool udp = false;
};

// A UDP "connection": datagrams from one client to one published port go out
// of a socket of its own, connected to the service, so replies find their
// way back to that client. Forgotten after kUdpIdle without traffic (as
// Docker's proxy does).
struct UdpFlow {
  int listener = -1;  // the published socket (replies leave from it)
  sockaddr_in client{};
  int upstream = -1;
  std::chrono::steady_clock::time_point last;
};
constexpr auto kUdpIdle = std::chrono::seconds(90);
constexpr std::size_t kUdpMaxFlows = 256;  // a descriptor each; TCP links need theirs too

// Moves what `from` has into `flow` and what `flow` holds into `to`.
// False: the link is broken.
bool pump(int from, int to, Flow& flow, short from_events, short to_events);

// The service's address and port `port`.
sockaddr_in service_address(const std::string& ip, int port);

// Datagrams waiting on a published UDP socket, each sent on to the service
// through its client's flow (made on its first datagram).
void forward_udp_in(const Listener& l, const std::string& ip, std::list<UdpFlow>& flows);

// The service's replies on one flow, back to its client from the published
// socket.
void forward_udp_out(UdpFlow& f);

}  // namespace modhost::backend::native::spawn
