// Runtime values of a Starlark plan: future references ("{{modhost:N:FIELD}}")
// and their resolution, jq-style extraction, and the comparisons of
// plan.verify / plan.wait. Pure functions, unit tested.
#pragma once

#include <boost/json/value.hpp>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::starlark {

struct Reference {
  std::size_t index = 0;  // the instruction that produces it
  std::string field;      // ip_address, code, output, extract.KEY, ...
  std::size_t begin = 0;  // where it stands in the string
  std::size_t end = 0;
};

// The references in `s`, in order.
std::vector<Reference> find_references(std::string_view s);
// Every reference in every string of `v`.
void collect_references(const boost::json::value& v, std::vector<Reference>& out);
std::string reference_text(std::size_t index, std::string_view field);

// Values produced by executed instructions, by instruction index and field.
class Futures {
 public:
  void set(std::size_t index, const std::string& field, boost::json::value v);
  const boost::json::value* get(std::size_t index, const std::string& field) const;
  // `v` with every reference replaced: a string that is one reference
  // becomes the value itself (a code stays a number); a reference inside a
  // longer string becomes the value's text. An unknown reference is an error.
  Result<boost::json::value> resolve(const boost::json::value& v) const;
  Result<std::string> resolve_string(std::string_view s) const;
  // The fields one instruction produced, for the run's record.
  boost::json::object fields_of(std::size_t index) const;

 private:
  std::map<std::size_t, std::map<std::string, boost::json::value>> values_;
};

// A value as text: a string as it is, anything else as JSON.
std::string display(const boost::json::value& v);
// Its Starlark type name: string, int, float, bool, list, dict, None.
std::string type_of(const boost::json::value& v);

// A jq-style extraction, compiled: paths (".a.b", ".[0]", ".[\"k\"]", "."),
// pipes, and fromjson, tojson, tonumber, tostring, length, keys,
// ascii_downcase, ascii_upcase.
class Extractor {
 public:
  static Result<Extractor> compile(std::string_view expression);
  Result<boost::json::value> apply(const boost::json::value& input) const;
  const std::string& expression() const { return expression_; }

  struct Step;

 private:
  std::string expression_;
  std::shared_ptr<const std::vector<Step>> steps_;
};

// The operators of plan.verify and plan.wait.
bool valid_assertion(std::string_view op);
// `value OP target`. Values of different types compare unequal for == and
// !=, and are an error for the ordering operators; IN and NOT_IN need an
// array target. Numbers compare by value (1 == 1.0).
Result<bool> compare(const boost::json::value& value, std::string_view op, const boost::json::value& target);

}  // namespace modhost::starlark
