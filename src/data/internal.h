// Helpers shared by the data sources (not public).
#pragma once

#include <string>

namespace candor::data::internal {

// Parses a whole field as a finite decimal number (spaces around it allowed).
bool parse_number(const std::string& s, double* out);

}  // namespace candor::data::internal
