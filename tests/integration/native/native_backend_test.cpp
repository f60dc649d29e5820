// What the native backend does that the conformance suite cannot ask of
// every backend: the device cgroup behind the capabilities, cgroup v2
// without some controllers, the shim's UDP forwarding under errors. Each
// test works in its own scope and leaves nothing of it behind (checked at
// tear-down from the kernel's and the file system's view).
#include "backends/native/native_backend.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "tests/conformance/backend_factory.hpp"

namespace modhost::testing {
namespace {

// A file's text, or empty.
std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// User + system CPU time of a process, in clock ticks (fields 14 and 15 of
// /proc/PID/stat).
long cpu_ticks(int pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::atol(field.c_str());
    if (i == 15) stime = std::atol(field.c_str());
  }
  return utime + stime;
}

// GET / from ADDRESS:8080 within `timeout_ms`: the body's first line, or
// empty. ADDRESS must be a service's, inside the enclave subnet.
std::string get_index(const std::string& address, int timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return "";
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(8080);
  ::inet_pton(AF_INET, address.c_str(), &to.sin_addr);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 || errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 1;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, timeout_ms) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err == 0) {
      const std::string request = "GET /index.html HTTP/1.0\r\n\r\n";
      (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      char buf[1024];
      for (pollfd r{fd, POLLIN, 0}; ::poll(&r, 1, timeout_ms) == 1;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  const auto body = got.find("\r\n\r\n");
  return body == std::string::npos ? "" : got.substr(body + 4, got.find('\n', body + 4) - body - 4);
}

class NativeBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tb_ = make_backend_for_test("native");
    if (!tb_.backend) {
      GTEST_SKIP() << "the native backend is not usable here: " << tb_.skip_reason;
    }
    b_ = tb_.backend.get();
    ASSERT_TRUE(ensure_test_image(*b_).ok());
    auto e = b_->create_enclave("nt-" + tb_.scope.substr(5));
    ASSERT_TRUE(e.ok()) << describe(e);
    enclave_ = e->id;
  }

  void TearDown() override {
    if (!b_) return;
    if (!enclave_.empty()) {
      EXPECT_TRUE(b_->remove_enclave(enclave_, true).ok());
    }
    auto left = tb_.list_labelled();
    ASSERT_TRUE(left.ok());
    std::string names;
    for (const auto& l : left.value()) names += "\n  " + l;
    EXPECT_TRUE(left->empty()) << "left behind:" << names;
    tb_.purge();
  }

  ExecResult sh(const std::string& service, const std::string& script) {
    auto r = b_->exec(enclave_, service, {"/bin/sh", "-c", script});
    EXPECT_TRUE(r.ok()) << describe(r);
    return r.ok() ? r.value() : ExecResult{-1, ""};
  }

  TestBackend tb_;
  backend::Backend* b_ = nullptr;
  std::string enclave_;
};

// A block device of this host, "MAJOR:MINOR" (a loop device where there is
// one), or empty.
std::string some_block_device() {
  std::error_code ec;
  std::string found;
  for (const auto& d : std::filesystem::directory_iterator("/sys/dev/block", ec)) {
    const std::string name = d.path().filename().string();
    if (found.empty() || name.rfind("7:", 0) == 0) found = name;
  }
  return found;
}

// Even with CAP_MKNOD given back, a service makes device nodes but opens
// only the few it is allowed (null, zero, full, random, urandom, tty, pts):
// a node of the host's disk reads as "Operation not permitted".
TEST_F(NativeBackendTest, TheDeviceCgroupLetsAServiceOpenOnlyItsOwnDevices) {
  // v1: the devices controller; v2 (on_cgroup_v2.sh runs this there too): a
  // BPF program.
  if (!std::filesystem::exists("/sys/fs/cgroup/devices/devices.deny") &&
      !std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers"))
    GTEST_SKIP() << "neither a cgroup v1 devices hierarchy nor cgroup v2 here";
  const std::string dev = some_block_device();
  if (dev.empty()) GTEST_SKIP() << "no block device on this host";
  ServiceConfig c = idle_service("dev");
  c.cap_add = {"MKNOD"};
  ASSERT_TRUE(b_->add_service(enclave_, c).ok());
  const std::string major = dev.substr(0, dev.find(':')), minor = dev.substr(dev.find(':') + 1);
  auto blocked = sh("dev", "mknod /dev/blk b " + major + " " + minor + " && head -c 1 /dev/blk");
  EXPECT_NE(blocked.exit_code, 0) << blocked.output;
  EXPECT_NE(blocked.output.find("Operation not permitted"), std::string::npos) << blocked.output;
  // The same for a character device not on the list (the kernel's memory).
  auto mem = sh("dev", "mknod /dev/kmem-test c 1 1 && head -c 1 /dev/kmem-test");
  EXPECT_NE(mem.output.find("Operation not permitted"), std::string::npos) << mem.output;
  // What a program needs still works.
  auto allowed =
      sh("dev", "head -c 4 /dev/urandom | wc -c && echo x > /dev/null && head -c 2 /dev/zero | wc -c");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
  EXPECT_EQ(allowed.output, "4\n2\n");
}

// On a cgroup v2 hierarchy without the memory controller (a v1 hierarchy
// holds it), a memory limit is refused with the reason, and nothing is made.
TEST_F(NativeBackendTest, OnCgroupV2WithoutTheMemoryControllerALimitIsRefusedClearly) {
  std::ifstream controllers("/sys/fs/cgroup/cgroup.controllers");
  if (!controllers) GTEST_SKIP() << "not a cgroup v2 host (on_cgroup_v2.sh runs this on one)";
  const std::string have((std::istreambuf_iterator<char>(controllers)), {});
  if (have.find("memory") != std::string::npos)
    GTEST_SKIP() << "this cgroup v2 host has the memory controller";
  ServiceConfig c = idle_service("limited");
  c.memory_bytes = 64ull << 20;
  auto added = b_->add_service(enclave_, c);
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.error().code(), ErrorCode::failed_precondition);
  EXPECT_NE(added.error().message().find("controller 'memory' is not available"), std::string::npos)
      << added.error().message();
  auto list = b_->list_services(enclave_);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  // Without the limit the same service runs, in a v2 cgroup.
  c.memory_bytes = 0;
  auto ok = b_->add_service(enclave_, c);
  ASSERT_TRUE(ok.ok()) << describe(ok);
  auto pause = b_->pause_service(enclave_, "limited");
  ASSERT_TRUE(pause.ok()) << pause.error().message();
  auto paused = b_->inspect_service(enclave_, "limited");
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(paused->status, ServiceStatus::paused);
  EXPECT_TRUE(b_->unpause_service(enclave_, "limited").ok());
}

// Datagrams sent before the service listens come back from the container as
// "port unreachable"; the shim reads that error off and keeps forwarding,
// without spinning on it (its CPU time stays small) and without losing the
// datagrams sent after the service binds.
TEST_F(NativeBackendTest, UdpBeforeTheServiceListensNeitherSpinsTheShimNorLosesLaterDatagrams) {
  ServiceConfig c;
  c.name = "late";
  c.image = kTestImage;
  c.entrypoint = {"/bin/sh", "-c", "sleep 1; exec /bin/udp-echo 5353"};
  c.ports = {PortSpec{"dns", 5353, "udp"}};
  auto s = b_->add_service(enclave_, c);
  ASSERT_TRUE(s.ok()) << describe(s);
  ASSERT_EQ(s->ports.size(), 1u);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(s->ports[0].host_port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto* native = dynamic_cast<backend::NativeBackend*>(b_);
  ASSERT_NE(native, nullptr);
  const std::string run =
      read_text(native->state_dir() + "/enclaves/" + enclave_ + "/services/late/run.json");
  const auto at = run.find("\"spawn_pid\":");
  ASSERT_NE(at, std::string::npos) << run;
  const int shim = std::atoi(run.c_str() + at + 12);
  const long cpu_before = cpu_ticks(shim);
  (void)::sendto(fd, "early", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);  // refused inside
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));                    // the service binds
  std::string reply;
  for (int attempt = 0; attempt < 25 && reply.empty(); ++attempt) {
    (void)::sendto(fd, "late", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) == 1) {
      char buf[64];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) reply.assign(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  EXPECT_EQ(reply, "echo late");
  // A shim spinning on the pending error burns the whole 1.5 s (150 ticks).
  EXPECT_LT(cpu_ticks(shim) - cpu_before, 30) << "the shim used CPU while it waited";
}

// A container's PID 1 runs modhost-init from a read-only mount of its own:
// /proc/1/exe leads to a file on a read-only mount (statvfs says so from
// the host), not to the host's writable build or install directory.
TEST_F(NativeBackendTest, PidOneRunsInitFromAReadOnlyMount) {
  ASSERT_TRUE(b_->add_service(enclave_, idle_service("box")).ok());
  auto* native = dynamic_cast<backend::NativeBackend*>(b_);
  ASSERT_NE(native, nullptr);
  const std::string run = read_text(native->state_dir() + "/enclaves/" + enclave_ + "/services/box/run.json");
  const auto at = run.find("\"pid\":");
  ASSERT_NE(at, std::string::npos) << run;
  const std::string exe = "/proc/" + std::to_string(std::atoi(run.c_str() + at + 6)) + "/exe";
  struct statvfs fs {};
  ASSERT_EQ(::statvfs(exe.c_str(), &fs), 0) << exe;
  EXPECT_NE(fs.f_flag & ST_RDONLY, 0u) << exe << " is on a writable mount";
  auto write = sh("box", "printf x >> /proc/1/exe");
  EXPECT_NE(write.exit_code, 0) << write.output;
}

// A service that gets the address of one just removed gets its MAC address
// too, so the neighbour entries the host still holds for the address stay
// right (with a new MAC, the engine's connections to a module container
// that reused an address stalled 30-50 s until the host's entry expired);
// and the removed one's veth is down when remove_service returns, so its
// network namespace, which the kernel dismantles later, answers nothing.
TEST_F(NativeBackendTest, AServiceGivenTheAddressOfARemovedOneGetsItsMacAndIsReachable) {
  auto enclave = b_->find_enclave(enclave_);
  ASSERT_TRUE(enclave.ok());
  std::string first_ip, first_mac;
  for (int generation = 0; generation < 3; ++generation) {
    ServiceConfig c;
    c.name = "web";
    c.image = kTestImage;
    const std::string mark = "generation-" + std::to_string(generation);
    c.entrypoint = {
        "/bin/sh", "-c",
        "mkdir -p /tmp/w && echo " + mark + " > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"};
    auto s = b_->add_service(enclave_, c);
    ASSERT_TRUE(s.ok()) << describe(s);
    ASSERT_TRUE(ip_in_subnet(s->ip, enclave->subnet)) << s->ip;
    const std::string mac = sh("web", "cat /sys/class/net/eth0/address").output;
    if (generation == 0) {
      first_ip = s->ip;
      first_mac = mac;
      // 02:6d, then the address's four bytes.
      unsigned a = 0, b = 0, c3 = 0, d = 0;
      ASSERT_EQ(std::sscanf(s->ip.c_str(), "%u.%u.%u.%u", &a, &b, &c3, &d), 4);
      char want[32];
      std::snprintf(want, sizeof want, "02:6d:%02x:%02x:%02x:%02x\n", a, b, c3, d);
      EXPECT_EQ(mac, want);
    }
    EXPECT_EQ(s->ip, first_ip) << "the removed service's address was not reused";
    EXPECT_EQ(mac, first_mac) << "generation " << generation;
    std::string body;
    for (int attempt = 0; attempt < 50 && body != mark; ++attempt) {
      body = get_index(s->ip, 200);
      if (body != mark) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(body, mark) << "generation " << generation;
    const std::string veth = "/sys/class/net/mhv" + s->id.substr(0, 12) + "/operstate";
    ASSERT_TRUE(b_->remove_service(enclave_, "web").ok());
    std::ifstream state(veth);
    std::string operstate = "gone";
    state >> operstate;
    EXPECT_TRUE(operstate == "gone" || operstate == "down") << operstate;
  }
}

}  // namespace
}  // namespace modhost::testing
