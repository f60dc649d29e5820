// The execute params of the built-in modules (chaos, partition, mutation),
// as a user or a script sends them. The first byte picks the module.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "chaos/chaos.hpp"
#include "mutation/mutation.hpp"
#include "partition/partition.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      (void)modhost::chaos::parse_params(json);
      break;
    case 1:
      (void)modhost::partition::parse_params(json);
      break;
    case 2:
      (void)modhost::mutation::parse_params(json);
      break;
    default:
      (void)modhost::partition::parse_rate(json);
      break;
  }
  return 0;
}
