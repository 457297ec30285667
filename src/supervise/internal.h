// Private to candor_supervise: helpers shared by the policy reader and the checks.
#pragma once

#include <string>
#include <string_view>

namespace candor::supervise {

// Hex SHA-256 of `bytes` (the policy hash).
std::string sha256_hex(std::string_view bytes);

}  // namespace candor::supervise
