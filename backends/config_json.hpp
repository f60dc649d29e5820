// A service's config as JSON: how backends keep what add_service got, so a
// fresh process can add the service again changed (a rolling update).
#pragma once

#include <string>
#include <string_view>

#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::backend {

std::string encode_config(const ServiceConfig& c);
// `name` goes into the config (it is not part of the JSON) and the error.
Result<ServiceConfig> decode_config(std::string_view text, const std::string& name);

}  // namespace modhost::backend
