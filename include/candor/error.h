// candor::Error: the one exception type the library throws, with a machine-readable code.
#pragma once

#include <stdexcept>
#include <string>

namespace candor {

enum class ErrorCode {
  kInvalidArgument,    // the caller's input is wrong (bad option, malformed text, bad shape)
  kNotFound,           // a file, token or name does not exist
  kUnsupported,        // valid input that candor cannot handle (yet)
  kResourceExhausted,  // out of memory, context length exceeded
  kCancelled,          // a progress callback asked to stop
  kInternal,           // a bug in candor
};

// Returns "InvalidArgument", "NotFound", ...
const char* error_code_name(ErrorCode code);

// An error with a code, a message naming the input at fault, and an optional hint that tells
// the user what to do about it. Thread-safe to copy; carries no resources.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, std::string hint = {})
      : std::runtime_error(message), code_(code), hint_(std::move(hint)) {}

  ErrorCode code() const { return code_; }
  const std::string& hint() const { return hint_; }

 private:
  ErrorCode code_;
  std::string hint_;
};

}  // namespace candor
