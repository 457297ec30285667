// Private to candor_supervise: helpers shared by the policy reader and the checks.
#pragma once

#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace candor::supervise {

// Hex SHA-256 of `bytes` (the policy hash).
std::string sha256_hex(std::string_view bytes);

// The matcher of a blocked_terms check, built once from its params (terms lower-cased, patterns
// compiled): the check itself and the streaming guard (StreamGuard) share it, so a streamed
// answer is judged exactly as the whole one.
struct BlockedMatch {
  size_t begin = 0, end = 0;  // [begin, end) in bytes
  bool pattern = false;       // a pattern's match (else a term's)
};
class BlockedMatcher {
 public:
  // Throws Error(kInvalidArgument) without terms and patterns or for an invalid pattern.
  explicit BlockedMatcher(const nlohmann::json& params);
  // Every match in `text`: each term's whole-word occurrences (any case; overlapping ones too),
  // then each pattern's non-overlapping matches (empty ones skipped). `found`, when given,
  // receives "term 'x' xN" / "pattern i xN" for each that matched.
  std::vector<BlockedMatch> find(const std::string& text,
                                 std::vector<std::string>* found = nullptr) const;
  size_t longest_term() const { return longest_term_; }  // bytes
  bool has_patterns() const { return !patterns_.empty(); }

 private:
  std::vector<std::string> terms_, lowered_;
  std::vector<std::regex> patterns_;
  size_t longest_term_ = 0;
};

// `text` with every span replaced by "[redacted]"; overlapping spans are merged first.
std::string mask_spans(const std::string& text, std::vector<std::pair<size_t, size_t>> spans);

}  // namespace candor::supervise
