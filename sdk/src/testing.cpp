#include "modhost/testing.hpp"

#include <cstdlib>
#include <filesystem>
#include <random>

namespace modhost::testing {
namespace {

// One check per process: is there a backend at all?
const std::optional<std::string>& unavailable_reason() {
  static const std::optional<std::string> reason = []() -> std::optional<std::string> {
    auto c = Client::from_environment();
    if (!c.ok()) return c.error().message();
    if (auto s = c->ping(); !s.ok()) return s.error().message();
    return std::nullopt;
  }();
  return reason;
}

std::string enclave_name() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string n = std::string(test->test_suite_name()) + "-" + test->name();
  std::string out;
  for (char ch : n) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
    if (ch >= 'A' && ch <= 'Z') {
      out += static_cast<char>(ch - 'A' + 'a');
    } else {
      out += ok ? ch : '-';
    }
  }
  if (out.size() > 40) out.resize(40);
  std::random_device rd;
  return out + "-" + std::to_string(rd() % 100000);
}

}  // namespace

void EnclaveTest::SetUp() {
  if (const auto& reason = unavailable_reason()) GTEST_SKIP() << "no container backend: " << *reason;
  auto c = Client::from_environment();
  ASSERT_TRUE(c.ok()) << c.error().message();
  client_.emplace(std::move(c).value());
  auto e = client_->create_enclave(enclave_name());
  ASSERT_TRUE(e.ok()) << e.error().message();
  enclave_.emplace(std::move(e).value());
}

void EnclaveTest::TearDown() {
  if (!enclave_) return;
  const char* keep = std::getenv("MODHOST_KEEP_ON_FAILURE");
  if (HasFailure() && keep != nullptr && std::string(keep) == "1") {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("modhost-" + enclave_->name())).string();
    auto dumped = enclave_->dump(dir);
    enclave_->release();
    std::printf("modhost: kept enclave '%s' (%s) of the failed test; %s\n", enclave_->name().c_str(),
                enclave_->id().c_str(),
                dumped.ok() ? ("its dump is in " + dir).c_str() : dumped.error().message().c_str());
  }
  enclave_.reset();
  client_.reset();
}

ServiceInfo EnclaveTest::info(const std::string& service) {
  auto s = enclave_->service(service);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? s.value() : ServiceInfo{};
}

}  // namespace modhost::testing
