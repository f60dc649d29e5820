#include <gtest/gtest.h>

#include "cli/cli.hpp"

using namespace modhost;
using namespace modhost::cli;
using std::chrono::milliseconds;

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration("500ms").value(), milliseconds(500));
  EXPECT_EQ(parse_duration("30s").value(), milliseconds(30'000));
  EXPECT_EQ(parse_duration("2").value(), milliseconds(2'000));
  EXPECT_EQ(parse_duration("1.5s").value(), milliseconds(1'500));
  EXPECT_EQ(parse_duration("2m").value(), milliseconds(120'000));
  EXPECT_EQ(parse_duration("1h").value(), milliseconds(3'600'000));
}

TEST(Duration, RejectsGarbage) {
  for (const char* bad : {"", "-1s", "abc", "10x", "0", "s"}) {
    auto r = parse_duration(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(ExitCodes, AreDistinctPerErrorClass) {
  EXPECT_EQ(exit_code_for(ErrorCode::invalid_argument), kExitInvalidInput);
  EXPECT_EQ(exit_code_for(ErrorCode::not_found), kExitNotFound);
  EXPECT_EQ(exit_code_for(ErrorCode::timeout), kExitTimeout);
  EXPECT_EQ(exit_code_for(ErrorCode::abi_mismatch), kExitAbiMismatch);
  EXPECT_EQ(exit_code_for(ErrorCode::module_failed), kExitModuleFailed);
  EXPECT_EQ(exit_code_for(ErrorCode::crashed), kExitModuleCrashed);
}
