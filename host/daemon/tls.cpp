#include "daemon/tls.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/random.h>

#include <memory>
#include <vector>

namespace modhost::daemon {
namespace {

template <typename T, void (*F)(T*)>
struct Freer {
  void operator()(T* p) const { F(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Freer<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;
using Ext = std::unique_ptr<X509_EXTENSION, Freer<X509_EXTENSION, X509_EXTENSION_free>>;

Error tls_error(const std::string& step) {
  return Error(ErrorCode::internal, "cannot make the engine's TLS certificate: " + step + " failed");
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

bool is_ip(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789.:") == std::string::npos;
}

}  // namespace

Result<std::string> random_hex(std::size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  std::size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(buf.data() + got, bytes - got, 0);
    if (n <= 0) return Error(ErrorCode::internal, "cannot read random bytes from the kernel");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : buf) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Result<KeyAndCertificate> make_self_signed(const std::vector<std::string>& extra_names) {
  Key key(EVP_EC_gen("P-256"));
  if (!key) return tls_error("key generation");
  Cert cert(X509_new());
  if (!cert) return tls_error("X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("modhost-engine"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);

  std::string san = "DNS:modhost-engine,DNS:localhost,IP:127.0.0.1";
  for (const auto& n : extra_names) {
    if (n.empty() || n == "localhost" || n == "127.0.0.1" || n.find(',') != std::string::npos) continue;
    san += (is_ip(n) ? ",IP:" : ",DNS:") + n;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       std::vector<std::pair<int, std::string>>{{NID_subject_alt_name, san},
                                                {NID_basic_constraints, "critical,CA:TRUE"},
                                                {NID_key_usage, "critical,digitalSignature,keyCertSign"},
                                                {NID_ext_key_usage, "serverAuth"}}) {
    Ext ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str()));
    if (!ext || !X509_add_ext(cert.get(), ext.get(), -1)) return tls_error("certificate extension");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return tls_error("signing");

  Bio key_bio(BIO_new(BIO_s_mem()));
  Bio cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio) return tls_error("BIO_new");
  if (!PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
    return tls_error("writing the key");
  if (!PEM_write_bio_X509(cert_bio.get(), cert.get())) return tls_error("writing the certificate");
  return KeyAndCertificate{bio_string(key_bio.get()), bio_string(cert_bio.get())};
}

}  // namespace modhost::daemon
