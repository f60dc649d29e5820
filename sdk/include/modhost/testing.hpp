// gtest support for chaos experiments in a test suite:
//
//   class Quorum : public modhost::testing::EnclaveTest {};
//   TEST_F(Quorum, SurvivesOneReplicaCutOff) {
//     enclave().add_service({.name = "r1", .image = "modhost/datastore:0.1.0"});
//     enclave().partition({.partitions = {{"cut", {"r1"}}}, .default_connection = {.blocked = true}});
//     MODHOST_EXPECT_EVENTUALLY(write_succeeds(), std::chrono::seconds(10));
//   }
//
// Each test gets a fresh enclave, removed afterwards. With
// MODHOST_KEEP_ON_FAILURE=1 a failed test's enclave stays, dumped to a
// directory the test prints. Without a container backend every EnclaveTest
// skips, saying why.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "modhost/client.hpp"

namespace modhost::testing {

class EnclaveTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  Client& client() { return *client_; }
  Enclave& enclave() { return *enclave_; }

  // The ServiceInfo of a service, failing the test when it cannot be read.
  ServiceInfo info(const std::string& service);

 private:
  std::optional<Client> client_;
  std::optional<Enclave> enclave_;
};

// True once `condition` holds, polling every `interval` until `timeout`.
inline bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds interval = std::chrono::milliseconds(100)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace modhost::testing

// Expects `condition` to become true within `timeout` (a std::chrono duration).
#define MODHOST_EXPECT_EVENTUALLY(condition, timeout) MODHOST_EVENTUALLY_(EXPECT_TRUE, condition, timeout)
#define MODHOST_ASSERT_EVENTUALLY(condition, timeout) MODHOST_EVENTUALLY_(ASSERT_TRUE, condition, timeout)
#define MODHOST_EVENTUALLY_(check, condition, timeout)                                                  \
  check(::modhost::testing::eventually([&] { return static_cast<bool>(condition); },                    \
                                       std::chrono::duration_cast<std::chrono::milliseconds>(timeout))) \
      << #condition " did not become true within "                                                      \
      << std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count() << " ms"
