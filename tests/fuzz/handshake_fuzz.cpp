// The line an out-of-process module prints to say where it serves: parsed,
// and a parsed line formats back to one that parses the same.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/handshake.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace modhost::engine;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto h = parse_handshake(line);
  if (h.ok()) {
    auto again = parse_handshake(format_handshake(*h));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->core_version == h->core_version && again->api_version == h->api_version);
    FUZZ_CHECK(again->network == h->network && again->address == h->address &&
               again->protocol == h->protocol);
  }
  const int v = negotiate_api_version(line, {1, 2, 3});
  FUZZ_CHECK(v == 0 || v == 1 || v == 2 || v == 3);
  return 0;
}
