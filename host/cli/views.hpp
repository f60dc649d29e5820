// How the CLI shows backend objects: tables for people, JSON for scripts.
#pragma once

#include <boost/json/object.hpp>
#include <string>
#include <vector>

#include "backends/backend.hpp"

namespace modhost::cli {

const char* status_name(backend::EnclaveStatus s);
// "http: 80/tcp -> 127.0.0.1:49153"
std::string format_port(const PublishedPort& p);

boost::json::object to_json(const backend::EnclaveInfo& e);
boost::json::object to_json(const ServiceInfo& s);
boost::json::object to_json(const backend::ArtifactInfo& a);

// A left-aligned text table; columns size to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void print() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace modhost::cli
