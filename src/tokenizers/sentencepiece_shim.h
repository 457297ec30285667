// The part of libsentencepiece's SentencePieceProcessor that candor uses, reached through the
// isolated shim object (see shim/sentencepiece_shim.cpp for why it is isolated).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace candor::tokenizers {

class SpmStatus {
 public:
  SpmStatus() = default;
  explicit SpmStatus(std::string error) : error_(std::move(error)), ok_(false) {}
  bool ok() const { return ok_; }
  std::string ToString() const { return ok_ ? "OK" : error_; }

 private:
  std::string error_;
  bool ok_ = true;
};

// Mirrors sentencepiece::SentencePieceProcessor's method names. Not copyable.
class SentencePieceProcessor {
 public:
  SentencePieceProcessor() = default;
  ~SentencePieceProcessor();
  SentencePieceProcessor(const SentencePieceProcessor&) = delete;
  SentencePieceProcessor& operator=(const SentencePieceProcessor&) = delete;

  // Also fails (with the reason) when the shim object cannot be found or loaded.
  SpmStatus LoadFromSerializedProto(std::string_view serialized);
  SpmStatus Encode(std::string_view text, std::vector<int>* ids) const;
  int GetPieceSize() const;
  float GetScore(int id) const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;
  bool IsByte(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

 private:
  void* handle_ = nullptr;
};

}  // namespace candor::tokenizers
