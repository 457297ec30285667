// The built-in swap lexicons as text (src/audit/lexicons.cpp). Internal to candor_audit.
#pragma once

#include <vector>

namespace candor::audit {

struct BuiltinLexicon {
  const char* attribute;
  const char* groups;  // comma-separated
  const char* rows;    // one row a line, comma-separated, "-" = none
};
const std::vector<const BuiltinLexicon*>& builtin_lexicons();

}  // namespace candor::audit
