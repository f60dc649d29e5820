// Network partitioning of an enclave: services grouped into named partitions,
// and how traffic fares between two partitions. The partition module builds
// one from its params; the engine turns it into kernel rules in each
// service's network namespace.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost {

// Services named in no partition form this one together.
inline constexpr std::string_view kImplicitPartition = "others";

// How packets between two partitions fare. Every effect applies to each
// packet in each direction: a round trip crosses twice.
struct Connection {
  enum class Distribution { uniform, normal };

  bool blocked = false;
  double loss_percent = 0;  // 0..100
  std::chrono::microseconds delay{0};
  std::chrono::microseconds jitter{0};  // uniform: +-jitter; normal: standard deviation
  double correlation_percent = 0;       // 0..100, of loss and jitter with the previous packet
  Distribution distribution = Distribution::uniform;
  std::uint64_t rate_bytes_per_second = 0;  // 0: unlimited

  // True when traffic is not simply allowed.
  bool shaped() const noexcept {
    return blocked || loss_percent > 0 || delay.count() > 0 || jitter.count() > 0 ||
           rate_bytes_per_second > 0;
  }
  bool operator==(const Connection&) const = default;
};

struct PartitionConnection {
  std::string a;
  std::string b;
  Connection connection;
};

struct NetworkPartitioning {
  // Partition name -> service names.
  std::map<std::string, std::vector<std::string>> partitions;
  // Unordered pairs of partitions; a pair not listed gets `default_connection`.
  std::vector<PartitionConnection> connections;
  Connection default_connection;
  // Held only while the run that applied it lasts: once that process is gone,
  // `modhost clean` removes it.
  bool temporary = false;

  // True when nothing is shaped (applying it heals the network).
  bool empty() const noexcept;
};

// Checks `p` against the enclave's service names: every named service exists
// and sits in one partition, partition names are valid and not the implicit
// one, connections name known partitions (the implicit one included) and
// distinct ones, values are in range. The message names the offending item.
Status validate(const NetworkPartitioning& p, const std::vector<std::string>& services);
Status validate(const Connection& c, std::string_view where);

// Each service's partition; services not named map to kImplicitPartition.
std::map<std::string, std::string> partition_of(const NetworkPartitioning& p,
                                                const std::vector<std::string>& services);

// The connection between partitions `x` and `y` (unordered); for x == y,
// always an allowed connection.
Connection connection_between(const NetworkPartitioning& p, std::string_view x, std::string_view y);

}  // namespace modhost
