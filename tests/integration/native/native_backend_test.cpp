// What the native backend does that the conformance suite cannot ask of
// every backend: the device cgroup behind the capabilities. Each test works
// in its own scope and leaves nothing of it behind (checked at tear-down
// from the kernel's and the file system's view).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/conformance/backend_factory.hpp"

namespace modhost::testing {
namespace {

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
  if (!std::filesystem::exists("/sys/fs/cgroup/devices/devices.deny"))
    GTEST_SKIP() << "no cgroup v1 devices hierarchy here (cgroup v2 needs a BPF program)";
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

}  // namespace
}  // namespace modhost::testing
