// Unit tests of the greeter module: no host, no backend. The module is driven
// through its descriptor, as the host drives it, with a fake EnclaveContext.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "modhost/module.hpp"

// Defined by MODHOST_MODULE(greeter, ...) when built without MODHOST_PLUGIN_EXPORT.
const modhost::ModuleDescriptor& modhost_builtin_greeter();

namespace {

using modhost::Error;
using modhost::ErrorCode;
using modhost::Result;
using modhost::ServiceInfo;
using modhost::Status;

// An enclave held in memory: the services it lists and the lines logged to it.
// What the greeter never calls fails, so a test notices if it starts to.
class FakeEnclave final : public modhost::EnclaveContext {
 public:
  explicit FakeEnclave(std::string id) : id_(std::move(id)) {}

  void add(std::string name, modhost::ServiceStatus status) {
    ServiceInfo info;
    info.name = std::move(name);
    info.status = status;
    services_.push_back(std::move(info));
  }
  void fail_listing(Error error) { list_error_ = std::move(error); }
  const std::vector<std::pair<modhost::LogLevel, std::string>>& logs() const { return logs_; }

  std::string enclave_id() const override { return id_; }
  void log(modhost::LogLevel level, std::string_view message) override { logs_.emplace_back(level, message); }
  Result<std::vector<ServiceInfo>> list_services() override {
    if (list_error_) return *list_error_;
    return services_;
  }

  Result<ServiceInfo> add_service(const modhost::ServiceConfig&) override { return not_faked(); }
  Status remove_service(std::string_view) override { return not_faked(); }
  Result<ServiceInfo> inspect_service(std::string_view) override { return not_faked(); }
  Result<modhost::ExecResult> exec(std::string_view, const std::vector<std::string>&) override {
    return not_faked();
  }
  Status stop_service(std::string_view, int) override { return not_faked(); }
  Status start_service(std::string_view) override { return not_faked(); }
  Status restart_service(std::string_view) override { return not_faked(); }
  Status pause_service(std::string_view) override { return not_faked(); }
  Status unpause_service(std::string_view) override { return not_faked(); }
  Status kill_service(std::string_view, int) override { return not_faked(); }
  Result<std::string> service_logs(std::string_view) override { return not_faked(); }

 private:
  static Error not_faked() { return Error(ErrorCode::internal, "not faked in this test"); }

  std::string id_;
  std::vector<ServiceInfo> services_;
  std::optional<Error> list_error_;
  std::vector<std::pair<modhost::LogLevel, std::string>> logs_;
};

// Loads the module with LOAD_PARAMS and executes it once with PARAMS.
Result<std::string> run(modhost::EnclaveContext& ctx, std::string_view load_params, std::string_view params) {
  const modhost::ModuleDescriptor& descriptor = modhost_builtin_greeter();
  auto module = descriptor.create(load_params);
  if (!module.ok()) return std::move(module).error();
  return descriptor.execute(*module.value(), ctx, params);
}

boost::json::object parsed(const Result<std::string>& result) {
  EXPECT_TRUE(result.ok()) << result.error().message();
  if (!result.ok()) return {};
  return boost::json::parse(result.value()).as_object();
}

TEST(Greeter, DescribesItself) {
  const modhost::ModuleDescriptor& descriptor = modhost_builtin_greeter();
  EXPECT_EQ(descriptor.abi_version, modhost::kAbiVersion);
  EXPECT_STREQ(descriptor.name, "greeter");
  EXPECT_EQ(descriptor.params_format, modhost::ParamsFormat::json);
}

TEST(Greeter, GreetsTheWorldWithoutParams) {
  FakeEnclave enclave("");
  boost::json::object out = parsed(run(enclave, "", ""));
  EXPECT_EQ(out["message"], "Hello, world!");
  EXPECT_FALSE(out.contains("services"));
  ASSERT_EQ(enclave.logs().size(), 1u);
  EXPECT_NE(enclave.logs()[0].second.find("no enclave"), std::string::npos);
}

TEST(Greeter, GreetsByNameAndListsTheServices) {
  FakeEnclave enclave("e1");
  enclave.add("db", modhost::ServiceStatus::running);
  enclave.add("web", modhost::ServiceStatus::paused);
  boost::json::object out = parsed(run(enclave, "", R"({"name": "Ada"})"));
  EXPECT_EQ(out["message"], "Hello, Ada!");
  EXPECT_EQ(out["enclaveId"], "e1");
  EXPECT_EQ(out["services"], boost::json::parse(R"([{"name": "db", "status": "running"},
                                                   {"name": "web", "status": "paused"}])"));
}

TEST(Greeter, TakesItsGreetingFromTheLoadParams) {
  FakeEnclave enclave("e1");
  boost::json::object out = parsed(run(enclave, R"({"greeting": "Hi"})", R"({"name": "Bob"})"));
  EXPECT_EQ(out["message"], "Hi, Bob!");
  EXPECT_EQ(out["services"], boost::json::array());
}

TEST(Greeter, LogsThroughTheContext) {
  FakeEnclave enclave("e1");
  enclave.add("db", modhost::ServiceStatus::running);
  ASSERT_TRUE(run(enclave, "", R"({"name": "Ada"})").ok());
  ASSERT_EQ(enclave.logs().size(), 1u);
  EXPECT_EQ(enclave.logs()[0].first, modhost::LogLevel::info);
  EXPECT_EQ(enclave.logs()[0].second, "greeting Ada in enclave e1 (1 services)");
}

TEST(Greeter, RejectsANameThatIsNotAString) {
  FakeEnclave enclave("e1");
  Result<std::string> result = run(enclave, "", R"({"name": 42})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(result.error().message(), "'name' must be a string");
}

TEST(Greeter, RejectsParamsThatAreNotAJsonObject) {
  FakeEnclave enclave("e1");
  Result<std::string> result = run(enclave, "", "[1, 2]");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(result.error().message().find("must be a JSON object"), std::string::npos);
}

TEST(Greeter, FailsToLoadWithBadLoadParams) {
  auto module = modhost_builtin_greeter().create(R"({"greeting": true})");
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(module.error().message(), "'greeting' must be a string");
}

TEST(Greeter, AddsContextToAFailedListing) {
  FakeEnclave enclave("e1");
  enclave.fail_listing(Error(ErrorCode::unavailable, "the backend does not answer"));
  Result<std::string> result = run(enclave, "", "");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::unavailable);
  EXPECT_EQ(result.error().message(),
            "failed to list the services of enclave 'e1': the backend does not answer");
}

}  // namespace
