#include "modhost/partitioning.hpp"

#include <algorithm>
#include <set>

namespace modhost {
namespace {

Error bad(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

bool valid_partition_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  return std::all_of(n.begin(), n.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_' || ch == '.';
  });
}

}  // namespace

bool NetworkPartitioning::empty() const noexcept {
  if (default_connection.shaped() && !partitions.empty()) return false;
  return std::none_of(connections.begin(), connections.end(),
                      [](const PartitionConnection& c) { return c.connection.shaped(); });
}

Status validate(const Connection& c, std::string_view where) {
  const std::string w(where);
  if (!(c.loss_percent >= 0 && c.loss_percent <= 100)) {
    return bad(w + ": loss " + std::to_string(c.loss_percent) + " is outside 0..100");
  }
  if (!(c.correlation_percent >= 0 && c.correlation_percent <= 100)) {
    return bad(w + ": correlation " + std::to_string(c.correlation_percent) + " is outside 0..100");
  }
  if (c.delay.count() < 0) return bad(w + ": delay must not be negative");
  if (c.jitter.count() < 0) return bad(w + ": jitter must not be negative");
  if (c.jitter.count() > 0 && c.delay.count() == 0) return bad(w + ": jitter needs a delay");
  if (c.delay > std::chrono::seconds(60)) return bad(w + ": delay is over the 60 s limit");
  if (c.blocked && (c.loss_percent > 0 || c.delay.count() > 0 || c.rate_bytes_per_second > 0)) {
    return bad(w + ": a blocked connection takes no loss, delay or rate");
  }
  return ok_status();
}

Status validate(const NetworkPartitioning& p, const std::vector<std::string>& services) {
  const std::set<std::string> known(services.begin(), services.end());
  std::map<std::string, std::string> seen;  // service -> partition
  for (const auto& [name, members] : p.partitions) {
    if (name == kImplicitPartition) {
      return bad("partition name '" + name + "' is reserved for the services no partition names");
    }
    if (!valid_partition_name(name)) {
      return bad("partition name '" + name + "' is not valid: use 1-63 letters, digits, '-', '_' or '.'");
    }
    if (members.empty()) return bad("partition '" + name + "' has no services");
    for (const std::string& s : members) {
      if (!known.contains(s)) return bad("partition '" + name + "' names unknown service '" + s + "'");
      auto [it, inserted] = seen.emplace(s, name);
      if (!inserted) {
        return bad("service '" + s + "' is in two partitions: '" + it->second + "' and '" + name + "'");
      }
    }
  }
  auto partition_known = [&](const std::string& n) {
    return n == kImplicitPartition || p.partitions.contains(n);
  };
  std::set<std::pair<std::string, std::string>> pairs;
  for (const PartitionConnection& c : p.connections) {
    for (const std::string* n : {&c.a, &c.b}) {
      if (!partition_known(*n)) {
        return bad("connection names unknown partition '" + *n + "' (partitions: " + [&] {
          std::string all;
          for (const auto& [name, _] : p.partitions) all += name + ", ";
          return all + std::string(kImplicitPartition);
        }() + ")");
      }
    }
    if (c.a == c.b)
      return bad("connection from partition '" + c.a + "' to itself: a partition is never shaped");
    auto key = std::minmax(c.a, c.b);
    if (!pairs.emplace(key.first, key.second).second) {
      return bad("connection between '" + c.a + "' and '" + c.b + "' is given twice");
    }
    MODHOST_TRY(validate(c.connection, "connection between '" + c.a + "' and '" + c.b + "'"));
  }
  return validate(p.default_connection, "default connection");
}

std::map<std::string, std::string> partition_of(const NetworkPartitioning& p,
                                                const std::vector<std::string>& services) {
  std::map<std::string, std::string> out;
  for (const std::string& s : services) out[s] = std::string(kImplicitPartition);
  for (const auto& [name, members] : p.partitions) {
    for (const std::string& s : members) out[s] = name;
  }
  return out;
}

Connection connection_between(const NetworkPartitioning& p, std::string_view x, std::string_view y) {
  if (x == y) return Connection{};
  for (const PartitionConnection& c : p.connections) {
    if ((c.a == x && c.b == y) || (c.a == y && c.b == x)) return c.connection;
  }
  return p.default_connection;
}

}  // namespace modhost
