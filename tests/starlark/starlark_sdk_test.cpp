// Starlark from a C++ test suite: Enclave::run_starlark inside an EnclaveTest
// fixture, on the default backend.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "modhost/testing.hpp"

namespace {

const std::string kScripts = MODHOST_STARLARK_TESTS "/scripts";

class StarlarkSdk : public modhost::testing::EnclaveTest {};

TEST_F(StarlarkSdk, RunsAScriptInTheFixturesEnclaveAndSkipsItTheSecondTime) {
  modhost::StarlarkOptions options;
  options.args_json = R"({"count": 3})";
  auto first = enclave().run_starlark(kScripts + "/parallel.star", options);
  ASSERT_TRUE(first.ok()) << first.error().message();
  EXPECT_EQ(first->executed, 1u);
  EXPECT_EQ(boost::json::parse(first->output_json).as_array().size(), 3u);
  auto services = enclave().services();
  ASSERT_TRUE(services.ok());
  EXPECT_EQ(services->size(), 3u);
  EXPECT_FALSE(first->log.empty());

  auto second = enclave().run_starlark(kScripts + "/parallel.star", options);
  ASSERT_TRUE(second.ok()) << second.error().message();
  EXPECT_EQ(second->skipped, 1u);
  EXPECT_EQ(second->output_json, first->output_json);
}

TEST_F(StarlarkSdk, AnErrorNamesTheInstructionsPosition) {
  auto r = enclave().run_starlark(kScripts + "/failing_verify.star");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("failing_verify.star:4:16: plan.verify"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(r.error().code(), modhost::ErrorCode::module_failed);
}

}  // namespace
