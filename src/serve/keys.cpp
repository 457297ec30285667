// API keys (the --api-keys file, hashed, compared in constant time) and the SHA-256 digests the
// service records: of a key, of the model's weights.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <set>
#include <sstream>

#include "candor/error.h"
#include "candor/serve.h"
#include "candor/stored_weights.h"

namespace candor::serve {
namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

// Incremental SHA-256 over OpenSSL's EVP interface.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
      throw Error(ErrorCode::kInternal, "OpenSSL could not start a SHA-256 digest");
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string hex_digest() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, out, &n);
    return hex(out, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex_digest();
}

std::string weights_hash(const Model& model) {
  // Over the weights as stored: a quantized model's blocks, not a float32 copy of them (which
  // would cost the memory the quantization saves). For float tensors the digest is the same as
  // over named_parameters(): "name:sizes:dtype;" then the bytes.
  Sha256 h;
  visit_stored_weights(model, [&](const std::string& name, const std::string& layout,
                                  const void* data, size_t bytes) {
    const std::string head = name + ':' + layout + ';';
    h.update(head.data(), head.size());
    h.update(data, bytes);
  });
  return h.hex_digest();
}

std::vector<ApiKey> load_api_keys(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw Error(ErrorCode::kNotFound, "cannot read the api keys file '" + path + "'",
                "give a file of lines 'ID ROLE SHA256' (docs/serve.md)");
  std::vector<ApiKey> keys;
  std::set<std::string> ids;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.empty()) continue;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    const std::string hint =
        "each line is 'ID ROLE SHA256' with ROLE client or auditor and the "
        "hex SHA-256 of the key (printf %s \"$KEY\" | sha256sum)";
    if (f.size() != 3)
      throw Error(ErrorCode::kInvalidArgument,
                  where + "expected 3 fields (id, role, sha256), got " + std::to_string(f.size()),
                  hint);
    ApiKey k{f[0], f[1], f[2]};
    if (k.role != "client" && k.role != "auditor")
      throw Error(ErrorCode::kInvalidArgument,
                  where + "unknown role '" + k.role + "' (client or auditor)", hint);
    for (char& c : k.sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (k.sha256.rfind("sha256:", 0) == 0) k.sha256 = k.sha256.substr(7);
    if (!is_hex64(k.sha256))
      throw Error(ErrorCode::kInvalidArgument,
                  where + "the key of '" + k.id + "' is not a SHA-256 (64 hex digits)", hint);
    if (!ids.insert(k.id).second)
      throw Error(ErrorCode::kInvalidArgument, where + "the key id '" + k.id + "' is repeated",
                  "give every key its own id");
    keys.push_back(k);
  }
  if (keys.empty())
    throw Error(ErrorCode::kInvalidArgument, "the api keys file '" + path + "' holds no key",
                "add a line 'ID ROLE SHA256' (docs/serve.md)");
  return keys;
}

const ApiKey* find_api_key(const std::vector<ApiKey>& keys, const std::string& presented) {
  const std::string h = sha256_hex(presented);
  const ApiKey* found = nullptr;
  for (const ApiKey& k : keys) {
    // Every entry is compared in full (CRYPTO_memcmp takes the same time wherever bytes differ).
    const bool same = CRYPTO_memcmp(h.data(), k.sha256.data(), 64) == 0;
    if (same && found == nullptr) found = &k;
  }
  return found;
}

}  // namespace candor::serve
