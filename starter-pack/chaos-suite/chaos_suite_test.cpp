// Chaos in a test suite: each test gets a fresh enclave (removed afterwards),
// starts services, breaks one, and checks what the rest of the system sees.
// Needs a container backend (a running Docker engine) and the
// modhost/busybox:1 image (`modhost image load .../modhost-busybox.tar`);
// without a backend the tests skip, saying why.
#include "modhost/testing.hpp"

using namespace std::chrono_literals;

class ChaosSuite : public modhost::testing::EnclaveTest {
 protected:
  void add(const std::string& name) {
    modhost::ServiceConfig c;
    c.name = name;
    c.image = "modhost/busybox:1";
    c.cmd = {"sleep", "3600"};
    auto added = enclave().add_service(c);
    ASSERT_TRUE(added.ok()) << added.error().message();
  }
};

TEST_F(ChaosSuite, AKilledServiceStopsAndTheOthersRunOn) {
  add("victim");
  add("bystander");

  modhost::ChaosOptions kill;
  kill.services = {"victim"};
  auto report = enclave().chaos(kill);
  ASSERT_TRUE(report.ok()) << report.error().message();

  MODHOST_EXPECT_EVENTUALLY(info("victim").status == modhost::ServiceStatus::exited, 10s);
  EXPECT_EQ(info("bystander").status, modhost::ServiceStatus::running);
}

TEST_F(ChaosSuite, CommandsRunInsideServices) {
  add("worker");
  auto r = enclave().exec("worker", {"sh", "-c", "echo $((6 * 7))"});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->output, "42\n");
}
