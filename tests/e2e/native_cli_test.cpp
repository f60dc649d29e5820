// The native backend's faults as a user meets them through the CLI: a
// memory limit exceeded, programs that cannot run, a corrupt image, the
// host process SIGKILLed with services running, no root. Each test works in
// its own scope; afterwards nothing of it may be left: no enclave state,
// link, cgroup, mount or process (the fixture checks the first four, the
// tests the processes).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backends/image/image.hpp"
#include "support/docker_cli.hpp"

using modhost::test::run_command;
using namespace std::chrono_literals;

namespace {

const std::string& kBusybox = modhost::test::kBusyboxImage;

class NativeCli : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() {
    ::setenv("MODHOST_TEST_BACKEND", "native", 1);
    load_images({"modhost-busybox.tar"});
  }

  void TearDown() override {
    DockerCliTest::TearDown();
    EXPECT_EQ(processes_of_scope(), 0) << "a process of the scope outlived clean";
  }

  // Processes in the scope's cgroups (every process a service ever ran).
  int processes_of_scope() const {
    int n = 0;
    std::error_code ec;
    for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
      std::ifstream cg(p.path() / "cgroup");
      std::string text((std::istreambuf_iterator<char>(cg)), {});
      if (text.find("/modhost/" + scope_ + "/") != std::string::npos) ++n;
    }
    return n;
  }

  std::string status(const std::string& enclave, const std::string& service) {
    auto r = mh({"-o", "json", "service", "inspect", enclave, service});
    if (r.exit_code != 0) return "";
    return std::string(boost::json::parse(r.out).at("status").as_string());
  }

  bool wait_status(const std::string& enclave, const std::string& service, const std::string& want) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (status(enclave, service) == want) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

TEST_F(NativeCli, AServiceOverItsMemoryLimitIsOomKilledAndTheEventSaysSo) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "mem"}).exit_code, 0);
  auto r = mh({"service", "add", "mem", "hog", kBusybox, "--memory", "32m", "--", "sh", "-c",
               "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived; sleep 100"});
  // Depending on how fast it grows, the start check or the wait below sees it die.
  if (r.exit_code == 0) {
    ASSERT_TRUE(wait_status("mem", "hog", "exited"));
  }
  auto events = mh_json({"enclave", "events", "mem"});
  bool oom = false, died = false;
  for (const auto& e : events.as_array()) {
    if (e.at("subject") != "hog") continue;
    if (e.at("action") == "oom") oom = true;
    if (e.at("action") == "die") {
      died = true;
      EXPECT_EQ(e.at("attributes").at("exitCode"), "137") << e;
    }
  }
  EXPECT_TRUE(oom) << events;
  EXPECT_TRUE(died) << events;
  EXPECT_EQ(mh({"service", "logs", "mem", "hog"}).out.find("survived"), std::string::npos);
}

TEST_F(NativeCli, ProgramsThatCannotRunAreOneLineErrorsAndLeaveNothing) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "bad"}).exit_code, 0);
  expect_error(mh({"service", "add", "bad", "missing", kBusybox, "--entrypoint", "/no/such/binary"}), 5,
               "No such file or directory");
  expect_error(mh({"service", "add", "bad", "notexec", kBusybox, "--entrypoint", "/etc/passwd"}), 5,
               "Permission denied");
  expect_error(mh({"service", "add", "bad", "noimage", "modhost/not-there:1"}), 4, "not found");
  expect_error(mh({"service", "add", "bad", "icmp", kBusybox, "--ports", "dns=53/icmp"}), 3, "unknown protocol");
  auto ls = mh_json({"service", "ls", "bad"});
  EXPECT_TRUE(ls.at("services").as_array().empty()) << ls;
}

TEST_F(NativeCli, ACorruptImageArchiveIsRefusedAndTheStoreIsUnchanged) {
  const auto before = mh({"image", "ls"}).out;
  const std::string path = "/tmp/modhost-truncated-" + scope_ + ".tar";
  {
    std::ifstream in(std::string(MODHOST_IMAGE_DIR) + "/modhost-busybox.tar", std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(path, std::ios::binary) << data.substr(0, data.size() / 2);
  }
  auto r = mh({"image", "load", path});
  std::filesystem::remove(path);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  EXPECT_EQ(mh({"image", "ls"}).out, before);
}

TEST_F(NativeCli, ServicesOutliveAKilledHostProcessAndCleanRemovesEverything) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "crash"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "crash", "keeps", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  // SIGKILL the CLI in the middle of adding services, at several points.
  for (int delay_ms : {0, 5, 15, 40}) {
    auto bg = modhost::test::spawn({modhost::test::kModhostCli, "service", "add", "crash",
                                    "half" + std::to_string(delay_ms), kBusybox, "--", "sleep", "3600"},
                                   scope_ + "-" + std::to_string(delay_ms));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(bg.pid, SIGKILL);
    modhost::test::wait_exit(bg.pid, 10s);
  }
  // What ran before the crash still runs, seen by a fresh process.
  EXPECT_EQ(status("crash", "keeps"), "running");
  auto r = mh({"clean", "--all"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(modhost::test::labelled(scope_), "");
  EXPECT_EQ(processes_of_scope(), 0);
}

TEST_F(NativeCli, WithoutOverlayfsARootfsIsACopyOfTheLayers) {
  ::setenv("MODHOST_NATIVE_ROOTFS", "copy", 1);  // as on a kernel without overlayfs
  ASSERT_EQ(mh({"enclave", "add", "--name", "copy"}).exit_code, 0);
  auto added = mh({"service", "add", "copy", "box", kBusybox, "--", "sleep", "3600"});
  ::unsetenv("MODHOST_NATIVE_ROOTFS");
  ASSERT_EQ(added.exit_code, 0) << added.err;
  auto r = mh({"service", "exec", "copy", "box", "--", "sh", "-c",
               "echo written > /tmp/x && cat /tmp/x && ls /bin/sh"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "written\n/bin/sh\n");
  // No overlay of this scope is mounted: the service runs from its copy.
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    EXPECT_EQ(line.find(modhost::test::native_state_dir(scope_) + "/"), std::string::npos) << line;
  }
}

// Root in a container is root on the host (no user namespace): what it could
// use to reach the host is closed, and an image's symlinks cannot point the
// host's own work at the host.
TEST_F(NativeCli, AContainerCannotReachTheHostThroughProcDevicesOrSymlinks) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "walls"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "walls", "box", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  auto in = [&](const std::string& cmd) {
    return mh({"service", "exec", "walls", "box", "--", "sh", "-c", cmd});
  };
  EXPECT_NE(in("echo '|/tmp/x' > /proc/sys/kernel/core_pattern").exit_code, 0) << "/proc/sys is read-only";
  EXPECT_NE(in("echo s > /proc/sysrq-trigger").exit_code, 0);
  EXPECT_NE(in("mknod /tmp/disk b 8 0").exit_code, 0) << "no CAP_MKNOD";
  EXPECT_NE(in("echo x > /etc/hosts").exit_code, 0) << "the enclave's hosts file is read-only";
  EXPECT_EQ(in("cat /proc/self/status | grep CapInh").out, "CapInh:\t0000000000000000\n");

  // An image whose /etc is a symlink into where the host's root sits while
  // the container is made: /etc/hosts must not be made on the host.
  const std::string escape = "/tmp/modhost-escape-" + scope_;
  std::ifstream bin("/bin/busybox", std::ios::binary);
  std::string busybox((std::istreambuf_iterator<char>(bin)), {});
  modhost::image::TarWriter layer;
  layer.add_directory("bin");
  layer.add_file("bin/busybox", busybox, 0755);
  layer.add_symlink("bin/sleep", "busybox");
  layer.add_symlink("etc", "/.modhost-oldroot" + escape);
  modhost::image::ImageConfig config;
  config.reference = "modhost-test/escape:" + scope_;
  config.entrypoint = {"/bin/sleep", "3600"};
  auto archive = modhost::image::write_docker_archive(config, layer.finish());
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  const std::string path = "/tmp/modhost-escape-" + scope_ + ".tar";
  std::ofstream(path, std::ios::binary) << archive.value();
  ASSERT_EQ(mh({"image", "load", path}).exit_code, 0);
  std::filesystem::remove(path);
  std::filesystem::create_directories(escape);  // the symlink's target exists on the host
  auto r = mh({"service", "add", "walls", "escape", config.reference});
  EXPECT_NE(r.exit_code, 0) << "the mount point could only be made outside the container";
  EXPECT_FALSE(std::filesystem::exists(escape + "/hosts")) << "made on the host: " << escape << "/hosts";
  std::filesystem::remove_all(escape);
  EXPECT_EQ(mh({"image", "rm", config.reference}).exit_code, 0);
}

// Removing an enclave or a service returns before the kernel has
// unregistered their links (tens of milliseconds each); a helper finishes
// that, and then nothing is left: no link, no helper process. Bridged
// enclave traffic passes one shared FORWARD rule, never a second copy.
TEST_F(NativeCli, RemovedLinksGoInTheBackgroundAndOneForwardRuleServesEveryEnclave) {
  ASSERT_EQ(mh({"enclave", "add", "--name", "links"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "links", "a", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  ASSERT_EQ(mh({"service", "add", "links", "b", kBusybox, "--", "sleep", "3600"}).exit_code, 0);
  // More enclaves at once, from separate processes.
  std::vector<modhost::test::Background> adds;
  for (int k = 0; k < 3; ++k) {
    adds.push_back(modhost::test::spawn(
        {modhost::test::kModhostCli, "enclave", "add", "--name", "more" + std::to_string(k)},
        scope_ + "-more" + std::to_string(k)));
  }
  for (auto& a : adds) EXPECT_EQ(modhost::test::wait_exit(a.pid, 20s), std::optional<int>(0));
  const std::string bridge =
      "mhb" + std::string(mh_json({"enclave", "inspect", "links"}).at("id").as_string()).substr(0, 12);
  const std::string veth_a =
      "mhv" + std::string(mh_json({"service", "inspect", "links", "a"}).at("id").as_string()).substr(0, 12);
  const std::string veth_b =
      "mhv" + std::string(mh_json({"service", "inspect", "links", "b"}).at("id").as_string()).substr(0, 12);
  auto exists = [](const std::string& link) { return std::filesystem::exists("/sys/class/net/" + link); };
  ASSERT_TRUE(exists(bridge) && exists(veth_a) && exists(veth_b));
  if (modhost::test::read_file("/proc/sys/net/bridge/bridge-nf-call-iptables").rfind('1', 0) == 0) {
    const std::string rules = run_command({"/usr/sbin/iptables", "-w", "-S", "FORWARD"}).out;
    std::size_t copies = 0;
    for (auto at = rules.find("\"modhost bridges\""); at != std::string::npos;
         at = rules.find("\"modhost bridges\"", at + 1))
      ++copies;
    EXPECT_EQ(copies, 1u) << rules;
  }

  ASSERT_EQ(mh({"service", "rm", "links", "a"}).exit_code, 0);
  ASSERT_EQ(mh({"enclave", "rm", "-f", "links"}).exit_code, 0);
  // Helpers deleting these links (other scopes' helpers may run meanwhile).
  auto helpers = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string cmdline = modhost::test::read_file((p.path() / "cmdline").string());
      if (cmdline.find("delete-link") != std::string::npos &&
          (cmdline.find(bridge) != std::string::npos || cmdline.find(veth_a) != std::string::npos))
        ++n;
    }
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((exists(bridge) || exists(veth_a) || exists(veth_b)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(exists(bridge));
  EXPECT_FALSE(exists(veth_a));
  EXPECT_FALSE(exists(veth_b));
  // The helpers end with their last link.
  const auto helper_deadline = std::chrono::steady_clock::now() + 10s;
  while (helpers() > 0 && std::chrono::steady_clock::now() < helper_deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(helpers(), 0);
}

TEST_F(NativeCli, WithoutRootTheNativeBackendSaysWhatItNeeds) {
  // The same binary as an unprivileged user.
  auto r = run_command({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        modhost::test::kModhostCli, "--backend", "native", "enclave", "ls"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("needs root"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
