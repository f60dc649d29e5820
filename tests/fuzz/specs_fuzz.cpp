// The command line's small languages: port specs, memory sizes, wait specs,
// KEY=VALUE. The first byte picks the parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cli/specs.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  using namespace modhost;
  switch (data[0] % 4) {
    case 0: {
      auto p = cli::parse_port_spec(text);
      if (p.ok()) {
        FUZZ_CHECK(p->number >= 1);
        FUZZ_CHECK(!p->name.empty());
        FUZZ_CHECK(p->protocol == "tcp" || p->protocol == "udp" || p->protocol == "sctp");
      }
      break;
    }
    case 1: {
      auto m = cli::parse_memory(text);
      if (m.ok()) FUZZ_CHECK(*m > 0);
      break;
    }
    case 2: {
      auto w = cli::parse_wait_spec(text);
      if (w.ok() && w->kind != ReadinessCheck::Kind::exec) FUZZ_CHECK(!w->port.empty());
      break;
    }
    default: {
      auto kv = cli::parse_key_value(text, "label");
      if (kv.ok()) FUZZ_CHECK(!kv->first.empty() && kv->first.size() + kv->second.size() + 1 == text.size());
      break;
    }
  }
  return 0;
}
