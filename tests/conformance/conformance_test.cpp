// One suite every backend passes. Each test runs in its own scope (a label on
// every resource it makes); afterwards nothing labelled with that scope may be
// left. Traffic goes only to 127.0.0.1 and to the test's own services.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "backends/image/image.hpp"
#include "tests/conformance/backend_factory.hpp"

namespace modhost::testing {
namespace {

using backend::Backend;
using backend::EnclaveInfo;
using backend::EnclaveStatus;
using modhost::ReadinessCheck;
using namespace std::chrono_literals;

using modhost::testing::describe;

#define EXPECT_CODE(expr, code_)                                                            \
  do {                                                                                      \
    const auto& modhost_r_ = (expr);                                                        \
    ASSERT_FALSE(modhost_r_.ok()) << #expr << " succeeded, expected " << #code_;            \
    EXPECT_EQ(modhost_r_.error().code(), ErrorCode::code_) << modhost_r_.error().message(); \
  } while (false)

class BackendConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tb_ = make_backend_for_test(GetParam());
    if (!tb_.backend)
      GTEST_SKIP() << "backend '" << GetParam() << "' is not usable here: " << tb_.skip_reason;
    b_ = tb_.backend.get();
    ASSERT_OK(ensure_test_image(*b_));
  }

  void TearDown() override {
    if (!b_) return;
    // Enclaves the test left on purpose or by failing: removed through the backend first.
    for (const auto& id : made_) (void)b_->remove_enclave(id, true);
    auto left = tb_.list_labelled();
    ASSERT_TRUE(left.ok()) << left.error().message();
    std::string names;
    for (const auto& l : left.value()) names += "\n  " + l;
    EXPECT_TRUE(left->empty()) << "resources left behind by the test (scope " << tb_.scope << "):" << names;
    tb_.purge();
  }

  // A fresh enclave the test owns; removed (force) at tear-down if still there.
  EnclaveInfo enclave(const std::string& base) {
    auto e = b_->create_enclave(name(base));
    EXPECT_TRUE(e.ok()) << describe(e);
    if (!e.ok()) return {};
    made_.push_back(e->id);
    return e.value();
  }

  std::string name(const std::string& base) { return "ct-" + tb_.scope.substr(5) + "-" + base; }

  ServiceInfo add(const EnclaveInfo& e, const ServiceConfig& c) {
    auto s = b_->add_service(e.id, c);
    EXPECT_TRUE(s.ok()) << describe(s);
    return s.ok() ? s.value() : ServiceInfo{};
  }

  std::uint16_t host_port(const ServiceInfo& s, std::uint16_t inner) {
    for (const auto& p : s.ports) {
      if (p.port.number == inner) return p.host_port;
    }
    return 0;
  }

  ExecResult run(const EnclaveInfo& e, const std::string& service, const std::vector<std::string>& argv) {
    auto r = b_->exec(e.id, service, argv);
    EXPECT_TRUE(r.ok()) << describe(r);
    return r.ok() ? r.value() : ExecResult{-1, ""};
  }

  // `nc` from `from` to HOST:PORT; true when the connection was made. HOST is
  // a service name or an IP checked to lie in one of the test's enclaves.
  bool can_connect(const EnclaveInfo& e, const std::string& from, const std::string& host) {
    return run(e, from, {"sh", "-c", "nc -w 2 " + host + " 8080 </dev/null"}).exit_code == 0;
  }

  TestBackend tb_;
  Backend* b_ = nullptr;
  std::vector<std::string> made_;
};

// --- Enclaves ---------------------------------------------------------------

TEST_P(BackendConformance, EnclaveCreateListFindRemove) {
  EnclaveInfo e = enclave("basic");
  ASSERT_EQ(e.id.size(), 32u);
  EXPECT_TRUE(
      std::all_of(e.id.begin(), e.id.end(), [](char c) { return std::isxdigit(c) && !std::isupper(c); }));
  EXPECT_EQ(e.name, name("basic"));
  EXPECT_TRUE(e.complete);
  EXPECT_FALSE(e.subnet.empty());
  EXPECT_FALSE(e.created.empty());
  EXPECT_TRUE(ip_in_subnet(e.gateway, e.subnet)) << e.gateway << " " << e.subnet;

  auto list = b_->list_enclaves();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().id, e.id);
  EXPECT_EQ(list->front().status, EnclaveStatus::empty);

  for (const std::string& key : {e.id, e.name, e.id.substr(0, 8)}) {
    auto f = b_->find_enclave(key);
    ASSERT_OK(f);
    EXPECT_EQ(f->id, e.id) << key;
    EXPECT_EQ(f->name, e.name);
    EXPECT_EQ(f->subnet, e.subnet);
  }

  ASSERT_OK(b_->remove_enclave(e.id, false));
  EXPECT_CODE(b_->find_enclave(e.id), not_found);
  auto after = b_->list_enclaves();
  ASSERT_OK(after);
  EXPECT_TRUE(after->empty());
}

TEST_P(BackendConformance, DuplicateEnclaveNameIsRefused) {
  EnclaveInfo e = enclave("dup");
  EXPECT_CODE(b_->create_enclave(e.name), already_exists);
  EXPECT_CODE(b_->create_enclave("bad name!"), invalid_argument);
  ASSERT_OK(b_->remove_enclave(e.id, false));
}

TEST_P(BackendConformance, EnclaveStatusStopAndRemove) {
  EnclaveInfo e = enclave("status");
  add(e, idle_service("a"));
  add(e, idle_service("b"));
  auto f = b_->find_enclave(e.id);
  ASSERT_OK(f);
  EXPECT_EQ(f->status, EnclaveStatus::running);

  auto refused = b_->remove_enclave(e.id, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::failed_precondition);
  EXPECT_NE(refused.error().message().find("has running services; stop it first or use -f"),
            std::string::npos)
      << refused.error().message();

  ASSERT_OK(b_->stop_enclave(e.id));
  f = b_->find_enclave(e.id);
  ASSERT_OK(f);
  EXPECT_EQ(f->status, EnclaveStatus::stopped);
  ASSERT_OK(b_->remove_enclave(e.id, false));
  EXPECT_CODE(b_->find_enclave(e.id), not_found);
}

TEST_P(BackendConformance, EnclavesAreIsolatedByRealTraffic) {
  EnclaveInfo a = enclave("iso-a");
  EnclaveInfo bb = enclave("iso-b");
  ServiceInfo a1 = add(a, http_service("web"));
  add(a, idle_service("client"));
  ServiceInfo b1 = add(bb, http_service("web"));
  ASSERT_NE(a.subnet, bb.subnet);
  // Only ever connect to addresses of our own enclaves.
  ASSERT_TRUE(ip_in_subnet(a1.ip, a.subnet)) << a1.ip << " not in " << a.subnet;
  ASSERT_TRUE(ip_in_subnet(b1.ip, bb.subnet)) << b1.ip << " not in " << bb.subnet;

  ReadinessCheck ready;
  ready.kind = ReadinessCheck::Kind::tcp;
  ready.port = "http";
  ASSERT_OK(b_->wait_ready(a.id, "web", ready));
  ASSERT_OK(b_->wait_ready(bb.id, "web", ready));

  EXPECT_TRUE(can_connect(a, "client", a1.ip)) << "within an enclave, by IP";
  EXPECT_TRUE(can_connect(a, "client", "web")) << "within an enclave, by service name";
  EXPECT_FALSE(can_connect(a, "client", b1.ip)) << "across enclaves, by IP";

  ASSERT_OK(b_->remove_enclave(a.id, true));
  ASSERT_OK(b_->remove_enclave(bb.id, true));
}

// --- Services ---------------------------------------------------------------

TEST_P(BackendConformance, ServiceLifecycle) {
  EnclaveInfo e = enclave("life");
  ServiceConfig c = http_service("web");
  c.labels["team"] = "qa";
  c.env["GREETING"] = "hello world";
  // MODHOST_TEST_NO_LIMITS: the native run on a cgroup v2 hierarchy whose
  // memory and cpu controllers v1 hierarchies hold (on_cgroup_v2.sh).
  if (std::getenv("MODHOST_TEST_NO_LIMITS") == nullptr) {
    c.cpus = 0.5;
    c.memory_bytes = 64ull << 20;
  }
  ServiceInfo s = add(e, c);
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(s.enclave_id, e.id);
  EXPECT_EQ(s.status, ServiceStatus::running);
  EXPECT_FALSE(s.id.empty());
  EXPECT_TRUE(ip_in_subnet(s.ip, e.subnet)) << s.ip;
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].port.name, "http");
  EXPECT_EQ(s.ports[0].host_ip, "127.0.0.1");
  EXPECT_GT(s.ports[0].host_port, 0);
  EXPECT_EQ(s.labels["team"], "qa");
  EXPECT_EQ(s.labels[backend::kLabelKind], "service");
  EXPECT_EQ(s.labels[backend::kLabelEnclave], e.id);
  EXPECT_EQ(s.labels[backend::kLabelName], "web");
  EXPECT_EQ(run(e, "web", {"sh", "-c", "echo $GREETING"}).output, "hello world\n");

  auto list = b_->list_services(e.id);
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().name, "web");

  auto status = [&] {
    auto i = b_->inspect_service(e.id, "web");
    EXPECT_TRUE(i.ok()) << describe(i);
    return i.ok() ? i->status : ServiceStatus::unknown;
  };
  ASSERT_OK(b_->stop_service(e.id, "web", 2));
  EXPECT_TRUE(status() == ServiceStatus::exited || status() == ServiceStatus::stopped);
  ASSERT_OK(b_->start_service(e.id, "web"));
  EXPECT_EQ(status(), ServiceStatus::running);
  ASSERT_OK(b_->restart_service(e.id, "web"));
  EXPECT_EQ(status(), ServiceStatus::running);
  ASSERT_OK(b_->pause_service(e.id, "web"));
  EXPECT_EQ(status(), ServiceStatus::paused);
  ASSERT_OK(b_->unpause_service(e.id, "web"));
  EXPECT_EQ(status(), ServiceStatus::running);
  ASSERT_OK(b_->kill_service(e.id, "web", 9));
  // The kill is asynchronous in some engines: give it a moment.
  for (int i = 0; i < 50 && status() == ServiceStatus::running; ++i) std::this_thread::sleep_for(100ms);
  auto killed = b_->inspect_service(e.id, "web");
  ASSERT_OK(killed);
  EXPECT_EQ(killed->status, ServiceStatus::exited);
  ASSERT_TRUE(killed->exit_code.has_value());
  EXPECT_EQ(*killed->exit_code, 128 + 9);

  ASSERT_OK(b_->remove_service(e.id, "web"));
  EXPECT_CODE(b_->inspect_service(e.id, "web"), not_found);
  list = b_->list_services(e.id);
  ASSERT_OK(list);
  EXPECT_TRUE(list->empty());
  ASSERT_OK(b_->remove_enclave(e.id, false));
}

TEST_P(BackendConformance, PublishedPortsAnswerOnLoopback) {
  EnclaveInfo e = enclave("ports");
  ServiceInfo s = add(e, http_service("web"));
  const std::uint16_t port = host_port(s, 8080);
  ASSERT_GT(port, 0);
  ReadinessCheck ready;
  ready.kind = ReadinessCheck::Kind::http;
  ready.port = "8080";
  ASSERT_OK(b_->wait_ready(e.id, "web", ready));
  auto page = http_get_loopback(port, "/index.html");
  ASSERT_OK(page);
  EXPECT_NE(page->find("200 OK"), std::string::npos) << page.value();
  EXPECT_NE(page->find(kTestIndexBody), std::string::npos) << page.value();
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// A UDP port is published on loopback too; replies find their way back to
// each client (two clients, each gets its own answers).
TEST_P(BackendConformance, PublishedUdpPortsAnswerOnLoopback) {
  EnclaveInfo e = enclave("udp");
  ServiceConfig c;
  c.name = "echo";
  c.image = kTestImage;
  c.entrypoint = {"/bin/udp-echo"};
  c.cmd = {"5353"};
  c.ports = {PortSpec{"dns", 5353, "udp"}};
  ServiceInfo s = add(e, c);
  const std::uint16_t port = host_port(s, 5353);
  ASSERT_GT(port, 0);
  // Sends `message` from `fd` until an answer comes (the server may not be
  // bound yet), at most 10 s.
  auto ask = [port](int fd, const std::string& message) -> std::string {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0; attempt < 50; ++attempt) {
      (void)::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 200) == 1) {
        char buf[256];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) return std::string(buf, static_cast<std::size_t>(n));
      }
    }
    return "";
  };
  const int a = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int b = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(ask(a, "from a"), "echo from a");
  EXPECT_EQ(ask(b, "from b"), "echo from b");
  EXPECT_EQ(ask(a, "again a"), "echo again a");
  ::close(a);
  ::close(b);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_P(BackendConformance, ExecExitCodesAndOutput) {
  EnclaveInfo e = enclave("exec");
  add(e, idle_service("box"));
  ExecResult ok = run(e, "box", {"echo", "hello"});
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.output, "hello\n");
  ExecResult mixed = run(e, "box", {"sh", "-c", "echo to-out; echo to-err >&2; exit 7"});
  EXPECT_EQ(mixed.exit_code, 7);
  EXPECT_NE(mixed.output.find("to-out\n"), std::string::npos);
  EXPECT_NE(mixed.output.find("to-err\n"), std::string::npos);
  // A command that does not exist: an error, or a non-zero exit (126/127).
  auto missing = b_->exec(e.id, "box", {"/no/such/program"});
  if (missing.ok()) {
    EXPECT_NE(missing->exit_code, 0);
  }
  // Output larger than any single frame or buffer.
  ExecResult big = run(e, "box", {"sh", "-c", "seq 1 20000"});
  EXPECT_EQ(big.exit_code, 0);
  EXPECT_EQ(std::count(big.output.begin(), big.output.end(), '\n'), 20000);
  EXPECT_TRUE(big.output.ends_with("\n20000\n"));
  EXPECT_CODE(b_->exec(e.id, "box", {}), invalid_argument);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_P(BackendConformance, ServicesRunAsTheirConfiguredUser) {
  EnclaveInfo e = enclave("user");
  // The service's own process and every exec run as the configured user;
  // names come from the image's /etc/passwd and /etc/group.
  ServiceConfig numeric = idle_service("numeric");
  numeric.user = "2000:3000";
  add(e, numeric);
  EXPECT_EQ(run(e, "numeric", {"sh", "-c", "id -u; id -g"}).output, "2000\n3000\n");
  // The sleeping process itself, read from /proc: its real and effective ids.
  const std::string proc = run(e, "numeric",
                               {"sh", "-c",
                                "for p in /proc/[0-9]*; do if [ \"$(cat $p/comm)\" = sleep ]; then "
                                "cat $p/status; fi; done"})
                               .output;
  EXPECT_NE(proc.find("Uid:\t2000\t2000"), std::string::npos) << proc;
  EXPECT_NE(proc.find("Gid:\t3000\t3000"), std::string::npos) << proc;

  ServiceConfig named = idle_service("named");
  named.user = "app";  // 1234, its passwd group 5678
  add(e, named);
  EXPECT_EQ(run(e, "named", {"sh", "-c", "id -u; id -g"}).output, "1234\n5678\n");
  ServiceConfig grouped = idle_service("grouped");
  grouped.user = "app:audio";
  add(e, grouped);
  EXPECT_EQ(run(e, "grouped", {"sh", "-c", "id -u; id -g"}).output, "1234\n4321\n");

  // A user the image does not have, and a malformed one: refused, nothing
  // left of the service.
  ServiceConfig ghost = idle_service("ghost");
  ghost.user = "nosuchuser";
  EXPECT_FALSE(b_->add_service(e.id, ghost).ok());
  ghost.user = "a:b:c";
  EXPECT_CODE(b_->add_service(e.id, ghost), invalid_argument);
  auto list = b_->list_services(e.id);
  ASSERT_OK(list);
  EXPECT_EQ(list->size(), 3u);
  EXPECT_CODE(b_->inspect_service(e.id, "ghost"), not_found);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// What the syscall prober says of each probe, and the two seccomp lines of
// /proc/self/status, from inside the service.
// Whether this process's bounding set holds every capability the kernel has.
bool bounding_set_is_full() {
  std::ifstream status("/proc/self/status");
  std::ifstream last("/proc/sys/kernel/cap_last_cap");
  int last_cap = 0;
  last >> last_cap;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapBnd:", 0) != 0) continue;
    const unsigned long long set = std::stoull(line.substr(7), nullptr, 16);
    return set == (last_cap >= 63 ? ~0ull : (1ull << (last_cap + 1)) - 1);
  }
  return false;
}

struct Confined {
  std::string probes;  // "keyctl EPERM\n..."
  std::string status;  // "NoNewPrivs:\t1\nSeccomp:\t2\n"
};

TEST_P(BackendConformance, ServicesAreConfinedAsDockerConfinesThem) {
  EnclaveInfo e = enclave("confined");
  add(e, idle_service("plain"));
  // Each of these fails with EPERM. keyctl and a user namespace need no
  // capability at all: only the seccomp filter stops them.
  EXPECT_EQ(
      run(e, "plain", {"syscall-probe", "keyctl", "unshare-user", "unshare-mount", "mount", "reboot"}).output,
      "keyctl EPERM\nunshare-user EPERM\nunshare-mount EPERM\nmount EPERM\nreboot EPERM\n");
  // Docker's newest profile refuses AF_VSOCK sockets (the Debian engine
  // here does not yet); the native filter does.
  if (GetParam() == "native") {
    EXPECT_EQ(run(e, "plain", {"syscall-probe", "vsock"}).output, "vsock EPERM\n");
  }
  EXPECT_EQ(run(e, "plain", {"grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"}).output,
            "NoNewPrivs:\t1\nSeccomp:\t2\n");
  // The host's memory, keys and timers read as nothing; the kernel's knobs
  // and /sys cannot be written.
  EXPECT_EQ(
      run(e, "plain", {"sh", "-c", "cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c"}).output,
      "0\n");
  ExecResult knob = run(e, "plain", {"sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"});
  EXPECT_NE(knob.exit_code, 0) << knob.output;
  EXPECT_NE(knob.output.find("Read-only file system"), std::string::npos) << knob.output;
  ExecResult sys = run(e, "plain", {"sh", "-c", "touch /sys/kernel/modhost-probe"});
  EXPECT_NE(sys.exit_code, 0) << sys.output;
  EXPECT_EQ(run(e, "plain", {"sh", "-c", "ls -A /sys/firmware 2>/dev/null | wc -l"}).output, "0\n");
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_P(BackendConformance, SecurityOptionsAndPrivilegedGiveBackWhatDockerGivesBack) {
  EnclaveInfo e = enclave("unconfined");
  auto probe = [&](const std::string& name) {
    return Confined{run(e, name, {"syscall-probe", "keyctl", "unshare-user", "mount", "reboot"}).output,
                    run(e, name, {"grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"}).output};
  };
  // No filter: what needs no capability works, what does stays refused.
  ServiceConfig unfiltered = idle_service("unfiltered");
  unfiltered.security_opt = {"seccomp=unconfined"};
  add(e, unfiltered);
  Confined c = probe("unfiltered");
  EXPECT_EQ(c.probes, "keyctl ok\nunshare-user ok\nmount EPERM\nreboot EPERM\n");
  EXPECT_EQ(c.status, "NoNewPrivs:\t1\nSeccomp:\t0\n");

  ServiceConfig privs = idle_service("privs");
  privs.security_opt = {"no-new-privileges=false"};
  add(e, privs);
  EXPECT_EQ(probe("privs").status, "NoNewPrivs:\t0\nSeccomp:\t2\n");

  // The filter follows the capabilities: CAP_SYS_ADMIN brings mount back
  // (and the kernel lets it mount), as in Docker's profile.
  ServiceConfig admin = idle_service("admin");
  admin.cap_add = {"SYS_ADMIN"};
  add(e, admin);
  c = probe("admin");
  EXPECT_EQ(c.probes, "keyctl EPERM\nunshare-user ok\nmount ok\nreboot EPERM\n");
  EXPECT_EQ(c.status, "NoNewPrivs:\t1\nSeccomp:\t2\n");

  // Privileged: every capability, no filter, nothing masked. reboot is let
  // through to the kernel, which refuses it to a pid namespace (EINVAL).
  // runc asks for every capability it knows and fails where this process's
  // own bounding set lacks one (a confined host); the native backend keeps
  // what there is.
  if (GetParam() == "docker" && !bounding_set_is_full()) {
    std::cout
        << "[ NOTE     ] privileged not checked on Docker: this host's bounding set lacks capabilities\n";
  } else {
    ServiceConfig privileged = idle_service("privileged");
    privileged.privileged = true;
    add(e, privileged);
    c = probe("privileged");
    EXPECT_EQ(c.probes, "keyctl ok\nunshare-user ok\nmount ok\nreboot EINVAL\n");
    EXPECT_EQ(c.status, "NoNewPrivs:\t0\nSeccomp:\t0\n");
    ExecResult knob =
        run(e, "privileged", {"sh", "-c", "echo modhost > /proc/sys/kernel/domainname && echo written"});
    EXPECT_EQ(knob.output, "written\n");  // the service's own UTS namespace
  }

  // An option neither backend knows: refused before anything is made.
  ServiceConfig odd = idle_service("odd");
  odd.security_opt = {"apparmor=unconfined"};
  EXPECT_CODE(b_->add_service(e.id, odd), invalid_argument);
  EXPECT_CODE(b_->inspect_service(e.id, "odd"), not_found);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_P(BackendConformance, Logs) {
  EnclaveInfo e = enclave("logs");
  ServiceConfig c = idle_service("talker");
  c.entrypoint = {"/bin/sh"};
  c.cmd = {"-c", "echo line-one; echo line-two >&2; sleep 1; echo line-three; exec sleep 100000"};
  add(e, c);
  std::string all;
  ASSERT_OK(b_->logs(e.id, "talker", false, [&](std::string_view chunk) {
    all.append(chunk);
    return true;
  }));
  EXPECT_NE(all.find("line-one\n"), std::string::npos) << all;
  EXPECT_NE(all.find("line-two\n"), std::string::npos) << all;

  std::string followed;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK(b_->logs(e.id, "talker", true, [&](std::string_view chunk) {
    followed.append(chunk);
    return followed.find("line-three\n") == std::string::npos;
  }));
  EXPECT_NE(followed.find("line-one\n"), std::string::npos) << followed;
  EXPECT_NE(followed.find("line-three\n"), std::string::npos) << followed;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);

  // Following a service that ends returns when it ends.
  ServiceConfig brief = idle_service("brief");
  brief.entrypoint = {"/bin/sh"};
  brief.cmd = {"-c", "sleep 1; echo bye"};
  add(e, brief);
  std::string tail;
  ASSERT_OK(b_->logs(e.id, "brief", true, [&](std::string_view chunk) {
    tail.append(chunk);
    return true;
  }));
  EXPECT_NE(tail.find("bye\n"), std::string::npos) << tail;
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// --- Files artifacts --------------------------------------------------------

TEST_P(BackendConformance, FilesArtifacts) {
  EnclaveInfo e = enclave("files");
  const std::string tgz =
      make_tgz({{"hello.txt", "hello artifact\n"}, {"conf/app.ini", "[app]\nmode=test\n"}});
  ASSERT_FALSE(tgz.empty());
  auto stored = b_->store_artifact(e.id, "config", tgz);
  ASSERT_OK(stored);
  EXPECT_EQ(stored->name, "config");
  EXPECT_EQ(stored->enclave_id, e.id);
  EXPECT_EQ(stored->size_bytes, tgz.size());
  EXPECT_CODE(b_->store_artifact(e.id, "config", tgz), already_exists);
  EXPECT_CODE(b_->store_artifact(e.id, "junk", "not a tgz"), invalid_argument);

  auto list = b_->list_artifacts(e.id);
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().name, "config");
  EXPECT_EQ(list->front().size_bytes, tgz.size());

  auto down = b_->download_artifact(e.id, "config");
  ASSERT_OK(down);
  EXPECT_TRUE(down.value() == tgz) << "download must return the exact bytes stored";
  EXPECT_CODE(b_->download_artifact(e.id, "nope"), not_found);

  ServiceConfig c = idle_service("reader");
  c.files = {FileMount{"config", "/files"}};
  add(e, c);
  EXPECT_EQ(run(e, "reader", {"cat", "/files/hello.txt"}).output, "hello artifact\n");
  EXPECT_EQ(run(e, "reader", {"cat", "/files/conf/app.ini"}).output, "[app]\nmode=test\n");
  EXPECT_NE(run(e, "reader", {"sh", "-c", "echo x > /files/new.txt"}).exit_code, 0) << "mounted read-only";

  ServiceConfig missing = idle_service("bad");
  missing.files = {FileMount{"no-such-artifact", "/files"}};
  EXPECT_CODE(b_->add_service(e.id, missing), not_found);

  // A directory copied out of a service becomes a new artifact.
  ASSERT_EQ(
      run(e, "reader", {"sh", "-c", "mkdir -p /tmp/out/sub && echo made-inside > /tmp/out/sub/result.txt"})
          .exit_code,
      0);
  auto copied = b_->store_from_service(e.id, "reader", "/tmp/out", "results");
  ASSERT_OK(copied);
  auto copied_tgz = b_->download_artifact(e.id, "results");
  ASSERT_OK(copied_tgz);
  EXPECT_EQ(copied->size_bytes, copied_tgz->size());
  auto tar = image::gzip_decompress(copied_tgz.value());
  ASSERT_OK(tar);
  auto entries = image::read_tar(tar.value());
  ASSERT_OK(entries);
  bool found = false;
  for (const auto& entry : entries.value()) {
    // The directory keeps its own name, on every backend (Docker's archive API).
    if (entry.path == "out/sub/result.txt") {
      found = true;
      EXPECT_EQ(entry.content, "made-inside\n");
    }
  }
  EXPECT_TRUE(found) << "out/sub/result.txt missing from the stored artifact";
  EXPECT_CODE(b_->store_from_service(e.id, "reader", "/no/such/path", "none"), not_found);

  list = b_->list_artifacts(e.id);
  ASSERT_OK(list);
  EXPECT_EQ(list->size(), 2u);

  // Removed, its name is free again; the service that mounts another keeps reading it.
  ASSERT_OK(b_->remove_artifact(e.id, "results"));
  EXPECT_CODE(b_->remove_artifact(e.id, "results"), not_found);
  EXPECT_CODE(b_->download_artifact(e.id, "results"), not_found);
  ASSERT_OK(b_->store_from_service(e.id, "reader", "/tmp/out", "results"));
  list = b_->list_artifacts(e.id);
  ASSERT_OK(list);
  EXPECT_EQ(list->size(), 2u);
  EXPECT_EQ(run(e, "reader", {"cat", "/files/conf/app.ini"}).output, "[app]\nmode=test\n");
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// --- Readiness --------------------------------------------------------------

TEST_P(BackendConformance, Readiness) {
  EnclaveInfo e = enclave("ready");
  // Listens only after a second: the early probes must not pass.
  ServiceConfig late = http_service("late");
  late.entrypoint = {"/bin/sh"};
  late.cmd = {"-c", "sleep 1; exec httpd -f -p 8080 -h /www"};
  add(e, late);
  ReadinessCheck tcp;
  tcp.kind = ReadinessCheck::Kind::tcp;
  tcp.port = "http";
  tcp.interval = 100ms;
  tcp.retries = 100;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK(b_->wait_ready(e.id, "late", tcp));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 500ms) << "ready before anything listened";
  auto page = http_get_loopback(host_port(b_->inspect_service(e.id, "late").value(), 8080), "/");
  ASSERT_OK(page);
  EXPECT_NE(page->find(kTestIndexBody), std::string::npos);

  ReadinessCheck http;
  http.kind = ReadinessCheck::Kind::http;
  http.port = "http";
  http.path = "/index.html";
  http.body_contains = "conformance index";
  ASSERT_OK(b_->wait_ready(e.id, "late", http));

  ReadinessCheck exec;
  exec.kind = ReadinessCheck::Kind::exec;
  exec.command = {"sh", "-c", "test -f /www/index.html"};
  ASSERT_OK(b_->wait_ready(e.id, "late", exec));

  // Timeouts: the last attempt's error is in the message.
  ServiceConfig deaf = http_service("deaf");
  deaf.entrypoint = {"/bin/sleep"};
  deaf.cmd = {"100000"};
  add(e, deaf);
  ReadinessCheck quick;
  quick.kind = ReadinessCheck::Kind::tcp;
  quick.port = "8080";
  quick.retries = 3;
  quick.interval = 100ms;
  quick.timeout = 500ms;
  auto r = b_->wait_ready(e.id, "deaf", quick);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::timeout);
  EXPECT_NE(r.error().message().find("last attempt"), std::string::npos) << r.error().message();

  ReadinessCheck wrong_body = http;
  wrong_body.body_contains = "never-there";
  wrong_body.retries = 2;
  wrong_body.interval = 100ms;
  r = b_->wait_ready(e.id, "late", wrong_body);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::timeout);
  EXPECT_NE(r.error().message().find("never-there"), std::string::npos) << r.error().message();

  ReadinessCheck failing = exec;
  failing.command = {"sh", "-c", "echo not-yet; exit 1"};
  failing.retries = 2;
  failing.interval = 100ms;
  r = b_->wait_ready(e.id, "late", failing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::timeout);
  EXPECT_NE(r.error().message().find("not-yet"), std::string::npos) << r.error().message();

  ReadinessCheck unknown_port = tcp;
  unknown_port.port = "nope";
  EXPECT_CODE(b_->wait_ready(e.id, "late", unknown_port), invalid_argument);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// --- Recovery ---------------------------------------------------------------

TEST_P(BackendConformance, RecoverAndCleanAfterACrash) {
  auto before = b_->recover();
  ASSERT_OK(before);
  EXPECT_TRUE(before->empty());

  const std::string broken = name("crashed");
  ASSERT_OK(tb_.make_half_made_enclave(broken));
  auto found = b_->recover();
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_NE(found->front().find(broken), std::string::npos) << found->front();
  auto half = b_->find_enclave(broken);
  ASSERT_OK(half);
  EXPECT_FALSE(half->complete);
  EXPECT_CODE(b_->add_service(broken, idle_service("x")), failed_precondition);
  EXPECT_CODE(b_->create_enclave(broken), already_exists);

  EnclaveInfo stopped = enclave("stopped");
  add(stopped, idle_service("s"));
  ASSERT_OK(b_->stop_enclave(stopped.id));
  EnclaveInfo running = enclave("running");
  add(running, idle_service("r"));

  auto report = b_->clean(false);
  ASSERT_OK(report);
  std::string removed;
  for (const auto& r : report->removed) removed += r + "\n";
  EXPECT_EQ(report->removed.size(), 2u) << removed;
  EXPECT_NE(removed.find(broken), std::string::npos) << removed;
  EXPECT_NE(removed.find(stopped.id), std::string::npos) << removed;
  EXPECT_EQ(removed.find(running.id), std::string::npos) << removed;

  auto after = b_->recover();
  ASSERT_OK(after);
  EXPECT_TRUE(after->empty());
  auto left = b_->list_enclaves();
  ASSERT_OK(left);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().id, running.id);

  report = b_->clean(true);
  ASSERT_OK(report);
  EXPECT_EQ(report->removed.size(), 1u);
  left = b_->list_enclaves();
  ASSERT_OK(left);
  EXPECT_TRUE(left->empty());
}

// --- Bad input --------------------------------------------------------------

TEST_P(BackendConformance, BadInputIsRefusedClearly) {
  EXPECT_CODE(b_->find_enclave("no-such-enclave-" + random_suffix()), not_found);
  EXPECT_CODE(b_->add_service("no-such-enclave-" + random_suffix(), idle_service("x")), not_found);
  EXPECT_CODE(b_->stop_enclave("no-such-enclave-" + random_suffix()), not_found);
  EXPECT_CODE(b_->remove_enclave("no-such-enclave-" + random_suffix(), true), not_found);

  EnclaveInfo e = enclave("bad");
  EXPECT_CODE(b_->inspect_service(e.id, "ghost"), not_found);
  EXPECT_CODE(b_->stop_service(e.id, "ghost", 1), not_found);
  EXPECT_CODE(b_->remove_service(e.id, "ghost"), not_found);
  EXPECT_CODE(b_->exec(e.id, "ghost", {"true"}), not_found);
  EXPECT_CODE(b_->logs(e.id, "ghost", false, [](std::string_view) { return true; }), not_found);
  EXPECT_CODE(b_->kill_service(e.id, "ghost", 9), not_found);

  add(e, idle_service("one"));
  EXPECT_CODE(b_->add_service(e.id, idle_service("one")), already_exists);
  EXPECT_CODE(b_->add_service(e.id, idle_service("bad name")), invalid_argument);

  ServiceConfig no_image = idle_service("noimg");
  no_image.image = "modhost-test/does-not-exist:" + random_suffix();
  auto r = b_->add_service(e.id, no_image);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(
      r.error().message().find("image '" + no_image.image +
                               "' not found; load it with 'modhost image load' or 'modhost image pack'"),
      std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("failed to start service 'noimg' in enclave '" + e.name + "'"),
            std::string::npos)
      << r.error().message();

  // A program that cannot be run, and one that runs and exits at once: the
  // add either sees it (and fails with the reason, leaving nothing) or
  // returns, and then a readiness wait ends with its exit code and output
  // instead of running out of retries. (Native always sees the first: its
  // init reports a failed execve. Docker's init, like `docker run --init`,
  // starts and then exits 127.)
  auto fails_early = [&](const ServiceConfig& c, int code, const std::string& marker) {
    SCOPED_TRACE(c.name);
    auto added = b_->add_service(e.id, c);
    if (!added.ok()) {
      EXPECT_NE(added.error().message().find(marker), std::string::npos) << added.error().message();
      EXPECT_NE(added.error().message().find("failed to start service '" + c.name + "'"), std::string::npos)
          << added.error().message();
      EXPECT_CODE(b_->inspect_service(e.id, c.name), not_found);
      return;
    }
    ReadinessCheck never;
    never.kind = ReadinessCheck::Kind::exec;
    never.command = {"false"};
    never.retries = 600;
    never.interval = 50ms;
    Status waited = b_->wait_ready(e.id, c.name, never);
    ASSERT_FALSE(waited.ok());
    EXPECT_EQ(waited.error().code(), ErrorCode::failed_precondition) << waited.error().message();
    EXPECT_NE(waited.error().message().find("exited with code " + std::to_string(code)), std::string::npos)
        << waited.error().message();
    EXPECT_NE(waited.error().message().find(marker), std::string::npos) << waited.error().message();
    ASSERT_OK(b_->remove_service(e.id, c.name));
  };
  ServiceConfig missing = idle_service("missing");
  missing.entrypoint = {"/no/such/program"};
  missing.cmd = {};
  fails_early(missing, 127, "/no/such/program");
  if (GetParam() == "native") {
    EXPECT_FALSE(b_->add_service(e.id, missing).ok()) << "native reports a failed execve at once";
  }
  ServiceConfig dies = idle_service("dies");
  dies.entrypoint = {"/bin/sh"};
  dies.cmd = {"-c", "echo fatal-config-error-marker; exit 3"};
  fails_early(dies, 3, "fatal-config-error-marker");
  auto services = b_->list_services(e.id);
  ASSERT_OK(services);
  EXPECT_EQ(services->size(), 1u) << "a failed start leaves nothing behind";

  ASSERT_OK(b_->stop_service(e.id, "one", 1));
  EXPECT_CODE(b_->exec(e.id, "one", {"true"}), failed_precondition);
  EXPECT_CODE(b_->pause_service(e.id, "one"), failed_precondition);
  ASSERT_OK(b_->remove_enclave(e.id, false));
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendConformance, ::testing::Values("docker", "native"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace modhost::testing
