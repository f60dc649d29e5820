// A self-signed certificate for the engine's TCP listener (OpenSSL).
#pragma once

#include <string>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::daemon {

struct KeyAndCertificate {
  std::string key_pem;
  std::string cert_pem;
};

// An EC P-256 key and a certificate valid ten years, named "modhost-engine"
// (the name clients check) plus localhost, 127.0.0.1 and `extra_dns_names`.
Result<KeyAndCertificate> make_self_signed(const std::vector<std::string>& extra_names);

// `bytes` random bytes from the kernel, hex encoded.
Result<std::string> random_hex(std::size_t bytes);

}  // namespace modhost::daemon
