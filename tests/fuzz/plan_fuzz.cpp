// The plan the Starlark interpreter hands the engine: parsed, and a parsed
// plan written back parses to the same instructions. (Not to the same text:
// Boost.JSON 1.81 may read a double back one ulp off, as its parser does
// not round correctly by default.)
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "starlark/plan.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace modhost::starlark;
  auto plan = parse_plan(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!plan.ok()) return 0;
  const std::string text = boost::json::serialize(to_json(*plan));
  auto again = parse_plan(text);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->instructions.size() == plan->instructions.size());
  for (std::size_t i = 0; i < plan->instructions.size(); ++i) {
    FUZZ_CHECK(again->instructions[i].kind == plan->instructions[i].kind);
    FUZZ_CHECK(again->instructions[i].position == plan->instructions[i].position);
    FUZZ_CHECK(again->instructions[i].args.size() == plan->instructions[i].args.size());
  }
  return 0;
}
