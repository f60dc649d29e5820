#include "starlark/values.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cmath>

namespace modhost::starlark {
namespace json = boost::json;

namespace {
constexpr std::string_view kOpen = "{{modhost:";
constexpr std::string_view kClose = "}}";
}  // namespace

std::string reference_text(std::size_t index, std::string_view field) {
  return std::string(kOpen) + std::to_string(index) + ":" + std::string(field) + std::string(kClose);
}

std::vector<Reference> find_references(std::string_view s) {
  std::vector<Reference> out;
  for (std::size_t pos = s.find(kOpen); pos != std::string_view::npos; pos = s.find(kOpen, pos + 1)) {
    const std::size_t num = pos + kOpen.size();
    std::size_t index = 0;
    auto [p, ec] = std::from_chars(s.data() + num, s.data() + s.size(), index);
    if (ec != std::errc() || p == s.data() + s.size() || *p != ':') continue;
    const std::size_t field = static_cast<std::size_t>(p - s.data()) + 1;
    const std::size_t close = s.find(kClose, field);
    if (close == std::string_view::npos || close == field) continue;
    const std::string_view f = s.substr(field, close - field);
    if (f.find_first_of("{} \n") != std::string_view::npos) continue;
    out.push_back(Reference{index, std::string(f), pos, close + kClose.size()});
    pos = close;
  }
  return out;
}

void collect_references(const json::value& v, std::vector<Reference>& out) {
  if (v.is_string()) {
    auto refs = find_references(v.get_string());
    out.insert(out.end(), refs.begin(), refs.end());
  } else if (v.is_array()) {
    for (const auto& e : v.get_array()) collect_references(e, out);
  } else if (v.is_object()) {
    for (const auto& [k, e] : v.get_object()) {
      auto refs = find_references(k);
      out.insert(out.end(), refs.begin(), refs.end());
      collect_references(e, out);
    }
  }
}

std::string display(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  return json::serialize(v);
}

void Futures::set(std::size_t index, const std::string& field, json::value v) {
  values_[index][field] = std::move(v);
}

const json::value* Futures::get(std::size_t index, const std::string& field) const {
  auto i = values_.find(index);
  if (i == values_.end()) return nullptr;
  auto f = i->second.find(field);
  return f == i->second.end() ? nullptr : &f->second;
}

json::object Futures::fields_of(std::size_t index) const {
  json::object o;
  if (auto i = values_.find(index); i != values_.end()) {
    for (const auto& [k, v] : i->second) o[k] = v;
  }
  return o;
}

Result<std::string> Futures::resolve_string(std::string_view s) const {
  const auto refs = find_references(s);
  if (refs.empty()) return std::string(s);
  std::string out;
  std::size_t at = 0;
  for (const auto& r : refs) {
    const json::value* v = get(r.index, r.field);
    if (v == nullptr) {
      return Error(ErrorCode::invalid_argument,
                   "the value " + reference_text(r.index, r.field) + " is not known yet (instruction " +
                       std::to_string(r.index) + " has not produced '" + r.field + "')");
    }
    out.append(s.substr(at, r.begin - at));
    out += display(*v);
    at = r.end;
  }
  out.append(s.substr(at));
  return out;
}

Result<json::value> Futures::resolve(const json::value& v) const {
  if (v.is_string()) {
    const std::string_view s = v.get_string();
    const auto refs = find_references(s);
    if (refs.size() == 1 && refs[0].begin == 0 && refs[0].end == s.size()) {
      const json::value* got = get(refs[0].index, refs[0].field);
      if (got != nullptr) return *got;
    }
    MODHOST_ASSIGN_OR_RETURN(std::string text, resolve_string(s));
    return json::value(text);
  }
  if (v.is_array()) {
    json::array out;
    for (const auto& e : v.get_array()) {
      MODHOST_ASSIGN_OR_RETURN(json::value r, resolve(e));
      out.push_back(std::move(r));
    }
    return json::value(std::move(out));
  }
  if (v.is_object()) {
    json::object out;
    for (const auto& [k, e] : v.get_object()) {
      MODHOST_ASSIGN_OR_RETURN(std::string key, resolve_string(k));
      MODHOST_ASSIGN_OR_RETURN(json::value r, resolve(e));
      out[key] = std::move(r);
    }
    return json::value(std::move(out));
  }
  return v;
}

// --- Extractor ---

struct Extractor::Step {
  enum class Kind { key, index, function } kind = Kind::key;
  std::string key;  // key, or the function's name
  std::int64_t index = 0;
  bool pipe_before = false;
};

namespace {

Error bad_expression(std::string_view e, const std::string& why) {
  return Error(ErrorCode::invalid_argument, "extract expression '" + std::string(e) + "': " + why);
}

const std::vector<std::string_view>& functions() {
  static const std::vector<std::string_view> f = {"fromjson", "tojson",         "tonumber",     "tostring",
                                                  "length",   "ascii_downcase", "ascii_upcase", "keys"};
  return f;
}

Result<std::string> quoted(std::string_view e, std::size_t& i) {
  // At the opening quote; JSON string escapes.
  std::size_t j = i + 1;
  while (j < e.size() && e[j] != '"') j += e[j] == '\\' ? 2 : 1;
  if (j >= e.size()) return bad_expression(e, "unterminated string");
  boost::system::error_code ec;
  json::value v = json::parse(e.substr(i, j - i + 1), ec);
  if (ec || !v.is_string()) return bad_expression(e, "bad string");
  i = j + 1;
  return std::string(v.get_string());
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

json::value to_number(const json::value& v, bool& ok) {
  ok = true;
  if (v.is_number()) return v;
  if (v.is_string()) {
    const std::string s(v.get_string());
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return n;
    double d = 0;
    auto [q, ec2] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec2 == std::errc() && q == s.data() + s.size() && !s.empty()) return d;
  }
  ok = false;
  return nullptr;
}

}  // namespace

Result<Extractor> Extractor::compile(std::string_view e) {
  std::vector<Step> steps;
  std::size_t i = 0;
  bool pipe = false;
  bool need_term = true;
  auto skip_space = [&] {
    while (i < e.size() && std::isspace(static_cast<unsigned char>(e[i]))) ++i;
  };
  skip_space();
  if (i == e.size()) return bad_expression(e, "empty");
  while (i < e.size()) {
    skip_space();
    if (i >= e.size()) break;
    const char c = e[i];
    if (c == '|') {
      if (need_term) return bad_expression(e, "'|' needs a filter before it");
      pipe = true;
      need_term = true;
      ++i;
      continue;
    }
    if (!need_term && c != '.' && c != '[')
      return bad_expression(e, "unexpected '" + std::string(1, c) + "'");
    if (c == '.' || c == '[') {
      // A path: '.', '.a', '."a"', '.[0]', '.["a"]', chained.
      bool first = true;
      while (i < e.size() && (e[i] == '.' || e[i] == '[')) {
        if (e[i] == '.') {
          ++i;
          if (i < e.size() && e[i] == '"') {
            MODHOST_ASSIGN_OR_RETURN(std::string k, quoted(e, i));
            steps.push_back(Step{Step::Kind::key, k, 0, pipe && first});
          } else if (i < e.size() && ident_char(e[i])) {
            const std::size_t b = i;
            while (i < e.size() && ident_char(e[i])) ++i;
            steps.push_back(Step{Step::Kind::key, std::string(e.substr(b, i - b)), 0, pipe && first});
          } else if (i < e.size() && e[i] == '[') {
            continue;  // ".[" handled next round
          } else if (!first) {
            return bad_expression(e, "'.' must be followed by a key");
          }
        } else {
          ++i;
          skip_space();
          if (i < e.size() && e[i] == '"') {
            MODHOST_ASSIGN_OR_RETURN(std::string k, quoted(e, i));
            steps.push_back(Step{Step::Kind::key, k, 0, pipe && first});
          } else {
            std::int64_t n = 0;
            auto [p, ec] = std::from_chars(e.data() + i, e.data() + e.size(), n);
            if (ec != std::errc()) return bad_expression(e, "'[' takes a number or a quoted key");
            i = static_cast<std::size_t>(p - e.data());
            steps.push_back(Step{Step::Kind::index, "", n, pipe && first});
          }
          skip_space();
          if (i >= e.size() || e[i] != ']') return bad_expression(e, "missing ']'");
          ++i;
        }
        first = false;
        pipe = false;
      }
      need_term = false;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c))) {
      const std::size_t b = i;
      while (i < e.size() && ident_char(e[i])) ++i;
      const std::string name(e.substr(b, i - b));
      if (std::find(functions().begin(), functions().end(), name) == functions().end()) {
        return bad_expression(e, "'" + name +
                                     "' is not supported (supported: paths, '|', fromjson, tojson, tonumber, "
                                     "tostring, length, keys, ascii_downcase, ascii_upcase)");
      }
      steps.push_back(Step{Step::Kind::function, name, 0, pipe});
      pipe = false;
      need_term = false;
      continue;
    }
    return bad_expression(e, "unexpected '" + std::string(1, c) + "'");
  }
  if (need_term) return bad_expression(e, "ends with '|'");
  Extractor x;
  x.expression_ = std::string(e);
  x.steps_ = std::make_shared<const std::vector<Step>>(std::move(steps));
  return x;
}

Result<json::value> Extractor::apply(const json::value& input) const {
  json::value cur = input;
  auto fail = [&](const std::string& why) { return bad_expression(expression_, why); };
  for (const Step& s : *steps_) {
    switch (s.kind) {
      case Step::Kind::key:
        if (cur.is_null()) break;
        if (!cur.is_object())
          return fail("cannot index " + display(cur).substr(0, 60) + " with \"" + s.key + "\"");
        if (const json::value* v = cur.get_object().if_contains(s.key)) {
          json::value next = *v;
          cur = std::move(next);
        } else {
          cur = nullptr;
        }
        break;
      case Step::Kind::index: {
        if (cur.is_null()) break;
        if (!cur.is_array()) return fail("cannot index " + display(cur).substr(0, 60) + " with a number");
        const auto& a = cur.get_array();
        std::int64_t n = s.index < 0 ? static_cast<std::int64_t>(a.size()) + s.index : s.index;
        if (n < 0 || n >= static_cast<std::int64_t>(a.size())) {
          cur = nullptr;
        } else {
          json::value next = a[static_cast<std::size_t>(n)];
          cur = std::move(next);
        }
        break;
      }
      case Step::Kind::function: {
        const std::string& f = s.key;
        if (f == "fromjson") {
          if (!cur.is_string()) return fail("fromjson needs a string");
          boost::system::error_code ec;
          json::value v = json::parse(cur.get_string(), ec);
          if (ec) return fail("the text is not JSON: " + std::string(cur.get_string()).substr(0, 60));
          cur = std::move(v);
        } else if (f == "tojson") {
          cur = json::value(json::serialize(cur));
        } else if (f == "tonumber") {
          bool ok = false;
          json::value n = to_number(cur, ok);
          if (!ok) return fail("cannot be parsed as a number: " + display(cur).substr(0, 60));
          cur = std::move(n);
        } else if (f == "tostring") {
          cur = json::value(display(cur));
        } else if (f == "length") {
          if (cur.is_string()) {
            cur = static_cast<std::int64_t>(cur.get_string().size());
          } else if (cur.is_array()) {
            cur = static_cast<std::int64_t>(cur.get_array().size());
          } else if (cur.is_object()) {
            cur = static_cast<std::int64_t>(cur.get_object().size());
          } else if (cur.is_null()) {
            cur = 0;
          } else if (cur.is_number()) {
            cur = std::fabs(cur.to_number<double>());
          } else {
            return fail("a boolean has no length");
          }
        } else if (f == "keys") {
          if (!cur.is_object()) return fail("keys needs an object");
          std::vector<std::string> ks;
          for (const auto& [k, v] : cur.get_object()) ks.emplace_back(k);
          std::sort(ks.begin(), ks.end());
          json::array a;
          for (auto& k : ks) a.emplace_back(k);
          cur = std::move(a);
        } else {
          if (!cur.is_string()) return fail(f + " needs a string");
          std::string t(cur.get_string());
          for (char& ch : t) {
            ch = f == "ascii_downcase" ? static_cast<char>(std::tolower(static_cast<unsigned char>(ch)))
                                       : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
          }
          cur = json::value(t);
        }
        break;
      }
    }
  }
  return cur;
}

// --- Comparisons ---

bool valid_assertion(std::string_view op) {
  return op == "==" || op == "!=" || op == ">=" || op == ">" || op == "<=" || op == "<" || op == "IN" ||
         op == "NOT_IN";
}

namespace {

const char* type_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "None";
    case json::kind::bool_:
      return "bool";
    case json::kind::int64:
    case json::kind::uint64:
      return "int";
    case json::kind::double_:
      return "float";
    case json::kind::string:
      return "string";
    case json::kind::array:
      return "list";
    case json::kind::object:
      return "dict";
  }
  return "value";
}

bool equal(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) return a.to_number<double>() == b.to_number<double>();
  return a == b;
}

}  // namespace

Result<bool> compare(const json::value& a, std::string_view op, const json::value& b) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "IN" || op == "NOT_IN") {
    if (!b.is_array()) {
      return Error(ErrorCode::invalid_argument,
                   std::string(op) + " needs a list as its target, not a " + type_name(b));
    }
    bool found = false;
    for (const auto& e : b.get_array()) found = found || equal(a, e);
    return op == "IN" ? found : !found;
  }
  int order = 0;
  if (a.is_number() && b.is_number()) {
    const double x = a.to_number<double>(), y = b.to_number<double>();
    order = x < y ? -1 : (x > y ? 1 : 0);
  } else if (a.is_string() && b.is_string()) {
    const int c = a.get_string().subview().compare(b.get_string().subview());
    order = c < 0 ? -1 : (c > 0 ? 1 : 0);
  } else {
    return Error(ErrorCode::invalid_argument, "cannot compare '" + display(a) + "' (" + type_name(a) + ") " +
                                                  std::string(op) + " '" + display(b) + "' (" + type_name(b) +
                                                  ")");
  }
  if (op == "<") return order < 0;
  if (op == "<=") return order <= 0;
  if (op == ">") return order > 0;
  if (op == ">=") return order >= 0;
  return Error(ErrorCode::invalid_argument,
               "unknown assertion '" + std::string(op) + "' (use ==, !=, >=, >, <=, <, IN or NOT_IN)");
}

std::string type_of(const json::value& v) { return type_name(v); }

}  // namespace modhost::starlark
