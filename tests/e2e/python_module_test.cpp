// A module written in Python against the Kurtosis executable-module protocol
// (tests/modules/python_kurtosis) runs unmodified under
// `modhost module exec IMAGE`, against a real Docker engine. Each test works in
// its own label scope (MODHOST_SCOPE) and asserts, by listing labelled
// resources with the Docker engine itself, that the module container is gone
// after each run and that nothing is left after `modhost clean --all`.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "support/docker_cli.hpp"

using modhost::test::CommandResult;
using modhost::test::run_command;

namespace {

const std::string kModhost = std::string(MODHOST_BIN_DIR) + "/modhost";
const std::string kImage = "modhost-test/python-kurtosis-module:1";

bool is_hex_id(const std::string& s) {
  return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

class PythonModule : public modhost::test::DockerCliTest {
 protected:
  static void SetUpTestSuite() { load_images({"modhost-module-python-kurtosis.tar"}); }

  // After a run the module container is gone; its enclave stays.
  void expect_only_the_enclave_left() {
    EXPECT_EQ(modhost::test::scoped_containers(scope_), "")
        << "a module container is left in scope " << scope_;
    auto ls = mh({"-o", "json", "enclave", "ls"});
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    EXPECT_EQ(boost::json::parse(ls.out).at("enclaves").as_array().size(), 1u) << ls.out;
  }

  std::string scope_;
};

TEST_F(PythonModule, ExecuteEchoesParamsLoadParamsAndEnclaveId) {
  auto r = mh({"-o", "json", "module", "exec", kImage, "--load-params", R"({"k":"v"})", "--execute-params",
               R"({"x":1})"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  boost::system::error_code ec;
  boost::json::value out = boost::json::parse(r.out, ec);
  ASSERT_FALSE(ec) << r.out;
  EXPECT_EQ(out.at("module").at("name").as_string(), kImage);

  // The result is the module's response_json, embedded as JSON (or as a
  // string holding it).
  boost::json::value result = out.at("result");
  if (result.is_string()) {
    result = boost::json::parse(out.at("result").as_string(), ec);
    ASSERT_FALSE(ec) << out.at("result");
  }
  ASSERT_TRUE(result.is_object()) << r.out;
  EXPECT_EQ(result.at("params"), boost::json::parse(R"({"x":1})"));
  EXPECT_EQ(result.at("loadParams"), boost::json::parse(R"({"k":"v"})"));
  const std::string enclave_id(result.at("enclaveId").as_string());
  EXPECT_TRUE(is_hex_id(enclave_id)) << enclave_id;
  EXPECT_EQ(out.at("enclaveId").as_string(), enclave_id);

  expect_only_the_enclave_left();
}

TEST_F(PythonModule, AFailingExecuteIsAOneLineErrorWithExitCode9) {
  auto r = mh({"module", "exec", kImage, "--execute-params", R"({"fail":"nope"})"});
  EXPECT_EQ(r.exit_code, 9) << r.err;
  // stderr also carries the progress lines and the module's own output: the
  // error is the one line that starts with "error: ".
  std::vector<std::string> errors;
  for (std::size_t begin = 0; begin < r.err.size();) {
    std::size_t end = r.err.find('\n', begin);
    if (end == std::string::npos) end = r.err.size();
    const std::string line = r.err.substr(begin, end - begin);
    if (line.starts_with("error: ")) errors.push_back(line);
    begin = end + 1;
  }
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find("nope"), std::string::npos) << errors[0];
  EXPECT_TRUE(r.out.empty()) << r.out;
  expect_only_the_enclave_left();

  // The same failure for a machine: one JSON error object, the same exit code.
  auto j = mh({"-o", "json", "module", "exec", kImage, "--execute-params", R"({"fail":"nope"})"});
  EXPECT_EQ(j.exit_code, 9) << j.err;
  boost::system::error_code ec;
  boost::json::value out = boost::json::parse(j.out, ec);
  ASSERT_FALSE(ec) << j.out;
  EXPECT_EQ(out.at("error").at("exitCode").as_int64(), 9);
  const std::string message(out.at("error").at("message").as_string());
  EXPECT_NE(message.find("nope"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_EQ(modhost::test::scoped_containers(scope_), "") << "a module container is left in scope " << scope_;
}

}  // namespace
