// An example of chaos inside a test suite, written against the SDK
// (modhost/testing.hpp) as a user of modhost would: three replicas of the
// datastore and a client that writes to all of them and calls a write good
// when two of the three acknowledge it (a client-side quorum). Each test
// starts from a fresh enclave, breaks something, and asserts what the client
// observes. The client runs inside the enclave (a busybox service), so the
// partitions between services apply to it.
#include <chrono>
#include <string>
#include <vector>

#include "modhost/testing.hpp"
#include "support/packed_images.hpp"

using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kReplicas = {"r1", "r2", "r3"};

class QuorumWrite : public modhost::testing::EnclaveTest {
 protected:
  // The images the build packed, loaded once for the suite into the engine
  // the environment names (a fresh engine has none of them). Where no
  // backend answers the load fails and every test skips in SetUp.
  static void SetUpTestSuite() {
    (void)modhost::test::load_packed_images({"modhost-busybox.tar", "modhost-datastore.tar"});
  }

  void SetUp() override {
    EnclaveTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const std::string& r : kReplicas) {
      modhost::ServiceConfig c;
      c.name = r;
      c.image = "modhost/datastore:0.1.0";
      c.ports = {{"http", 1323, "tcp"}};
      auto added = enclave().add_service(c);
      ASSERT_TRUE(added.ok()) << r << ": " << added.error().message();
    }
    modhost::ServiceConfig client;
    client.name = "client";
    client.image = "modhost/busybox:1";
    client.cmd = {"sleep", "3600"};
    ASSERT_TRUE(enclave().add_service(client).ok());
    modhost::ReadinessCheck health;
    health.kind = modhost::ReadinessCheck::Kind::http;
    health.port = "http";
    health.path = "/health";
    health.interval = 100ms;
    for (const std::string& r : kReplicas) ASSERT_TRUE(enclave().wait_ready(r, health).ok()) << r;
  }

  // One replica's answer to PUT /kv/KEY from the client: true on 200/201
  // within a 2 s timeout.
  bool put(const std::string& replica, const std::string& key, const std::string& value) {
    const std::string ip = info(replica).ip;
    if (ip.empty()) return false;
    const std::string request = "PUT /kv/" + key +
                                " HTTP/1.0\\r\\nContent-Length: " + std::to_string(value.size()) +
                                "\\r\\n\\r\\n" + value;
    auto r = enclave().exec("client", {"sh", "-c", "printf '" + request + "' | nc -w 2 " + ip + " 1323"});
    return r.ok() &&
           (r->output.find(" 200 ") != std::string::npos || r->output.find(" 201 ") != std::string::npos);
  }

  // The client's quorum write: how many replicas acknowledged.
  int acks(const std::string& key, const std::string& value) {
    int n = 0;
    for (const std::string& r : kReplicas) n += put(r, key, value) ? 1 : 0;
    return n;
  }
  bool quorum(const std::string& key, const std::string& value) { return acks(key, value) >= 2; }
};

TEST_F(QuorumWrite, AllThreeAcknowledgeWhenNothingIsBroken) { EXPECT_EQ(acks("k", "v1"), 3); }

TEST_F(QuorumWrite, OneReplicaPartitionedAwayStillLeavesAQuorum) {
  modhost::PartitionOptions cut;
  cut.partitions = {{"lonely", {"r3"}}};
  cut.default_connection.blocked = true;
  auto report = enclave().partition(cut);
  ASSERT_TRUE(report.ok()) << report.error().message();
  EXPECT_FALSE(put("r3", "k", "v2")) << "r3 is cut off from the client";
  EXPECT_EQ(acks("k", "v2"), 2);
  EXPECT_TRUE(quorum("k", "v2"));

  ASSERT_TRUE(enclave().heal().ok());
  EXPECT_EQ(acks("k", "v3"), 3);
}

TEST_F(QuorumWrite, TwoReplicasCutOffLoseTheQuorum) {
  modhost::PartitionOptions cut;
  cut.partitions = {{"writer", {"client", "r1"}}};
  cut.default_connection.blocked = true;
  ASSERT_TRUE(enclave().partition(cut).ok());
  EXPECT_EQ(acks("k", "v"), 1);
  EXPECT_FALSE(quorum("k", "v"));
}

TEST_F(QuorumWrite, KillingTheLeaderLeavesTwoAndKillingTwoLeavesNone) {
  modhost::ChaosOptions kill;
  kill.services = {"r1"};  // the leader: the first replica the client writes to
  ASSERT_TRUE(enclave().chaos(kill).ok());
  EXPECT_EQ(info("r1").status, modhost::ServiceStatus::exited);
  EXPECT_TRUE(quorum("k", "after-leader"));

  kill.services = {"r2"};
  ASSERT_TRUE(enclave().chaos(kill).ok());
  EXPECT_FALSE(quorum("k", "after-two"));
}

TEST_F(QuorumWrite, DelayOf300msEachWayIsSeenByTheClient) {
  auto timed_write = [&] {
    auto t0 = std::chrono::steady_clock::now();
    bool ok = put("r2", "k", "slow");
    return std::make_pair(ok, std::chrono::steady_clock::now() - t0);
  };
  const auto base = timed_write();
  ASSERT_TRUE(base.first);

  modhost::PartitionOptions slow;
  slow.partitions = {{"client", {"client"}}};
  slow.default_connection.delay = 300ms;
  ASSERT_TRUE(enclave().partition(slow).ok());
  const auto delayed = timed_write();
  EXPECT_TRUE(delayed.first) << "delayed, not lost";
  // A TCP handshake and the request/response: at least two round trips of 600 ms.
  EXPECT_GT(delayed.second - base.second, 1000ms);
  EXPECT_TRUE(quorum("k", "slow-but-fine"));
}

}  // namespace
