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

TEST(Specs, PortsMemoryAndWaits) {
  auto p = parse_port_spec("dns=53/udp");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "dns");
  EXPECT_EQ(p->number, 53);
  EXPECT_EQ(p->protocol, "udp");
  EXPECT_EQ(parse_port_spec("db=5432")->protocol, "tcp");
  for (const char* bad : {"=80", "http", "http=0", "http=65536", "http=80/icmp", "http=8o"})
    EXPECT_FALSE(parse_port_spec(bad).ok()) << bad;

  EXPECT_EQ(parse_memory("64k").value(), 64u << 10);
  EXPECT_EQ(parse_memory("1g").value(), 1ull << 30);
  // A size that does not fit in 64 bits used to wrap around to
  // a small limit instead of being refused.
  EXPECT_FALSE(parse_memory("18014398509481985k").ok());
  EXPECT_FALSE(parse_memory("99999999999g").ok());
  EXPECT_EQ(parse_memory("17179869183g").value(), 17179869183ull << 30);

  auto w = parse_wait_spec("http:web/health");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->port, "web");
  EXPECT_EQ(w->path, "/health");
  EXPECT_FALSE(parse_wait_spec("http:/health").ok());
  EXPECT_FALSE(parse_wait_spec("udp:53").ok());
}
