// Loads the libsentencepiece shim into its own link namespace (dlmopen) once per process and
// forwards SentencePieceProcessor calls to it.
#include "tokenizers/sentencepiece_shim.h"

#include <dlfcn.h>
#include <unistd.h>

#include <mutex>
#include <string>

namespace candor::tokenizers {
namespace {

struct Api {
  void* (*load)(const char*, long, char*, int) = nullptr;
  void (*free)(void*) = nullptr;
  int (*piece_size)(void*) = nullptr;
  float (*score)(void*, int) = nullptr;
  int (*is_byte)(void*, int) = nullptr;
  int (*is_control)(void*, int) = nullptr;
  int (*is_unknown)(void*, int) = nullptr;
  int (*bos)(void*) = nullptr;
  int (*eos)(void*) = nullptr;
  int (*unk)(void*) = nullptr;
  int (*piece_to_id)(void*, const char*, long) = nullptr;
  int (*id_to_piece)(void*, int, char*, int) = nullptr;
  int (*encode)(void*, const char*, long, int*, int) = nullptr;
  int (*last_error)(void*, char*, int) = nullptr;
  std::string error;  // why loading failed, "" when loaded
};

std::string exe_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.find_last_of('/'));
}

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> paths;
    if (const char* env = std::getenv("CANDOR_SENTENCEPIECE_SHIM")) paths.push_back(env);
    paths.push_back(exe_dir() + "/libcandor_sentencepiece.so");
    paths.push_back(exe_dir() + "/../libcandor_sentencepiece.so");
#ifdef CANDOR_SENTENCEPIECE_SHIM_PATH
    paths.push_back(CANDOR_SENTENCEPIECE_SHIM_PATH);
#endif
    void* h = nullptr;
    std::string errors;
    for (const auto& p : paths) {
      if (::access(p.c_str(), R_OK) != 0) continue;
      h = ::dlmopen(LM_ID_NEWLM, p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h) break;
      errors += std::string(" ") + ::dlerror();
    }
    if (!h) {
      a.error =
          "the SentencePiece support library libcandor_sentencepiece.so was not found "
          "beside the program or could not be loaded" +
          errors;
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::decay_t<decltype(fn)>>(::dlsym(h, name));
      if (!fn && a.error.empty()) a.error = std::string("missing symbol ") + name;
    };
    sym(a.load, "candor_spm_load");
    sym(a.free, "candor_spm_free");
    sym(a.piece_size, "candor_spm_piece_size");
    sym(a.score, "candor_spm_score");
    sym(a.is_byte, "candor_spm_is_byte");
    sym(a.is_control, "candor_spm_is_control");
    sym(a.is_unknown, "candor_spm_is_unknown");
    sym(a.bos, "candor_spm_bos");
    sym(a.eos, "candor_spm_eos");
    sym(a.unk, "candor_spm_unk");
    sym(a.piece_to_id, "candor_spm_piece_to_id");
    sym(a.id_to_piece, "candor_spm_id_to_piece");
    sym(a.encode, "candor_spm_encode");
    sym(a.last_error, "candor_spm_last_error");
  });
  return a;
}

}  // namespace

SentencePieceProcessor::~SentencePieceProcessor() {
  if (handle_) api().free(handle_);
}

SpmStatus SentencePieceProcessor::LoadFromSerializedProto(std::string_view serialized) {
  const Api& a = api();
  if (!a.error.empty()) return SpmStatus(a.error);
  char err[1024] = {0};
  void* h = a.load(serialized.data(), static_cast<long>(serialized.size()), err, sizeof(err));
  if (!h) return SpmStatus(err);
  if (handle_) a.free(handle_);
  handle_ = h;
  return SpmStatus();
}

SpmStatus SentencePieceProcessor::Encode(std::string_view text, std::vector<int>* ids) const {
  const Api& a = api();
  ids->assign(text.size() + 8, 0);
  int n = a.encode(handle_, text.data(), static_cast<long>(text.size()), ids->data(),
                   static_cast<int>(ids->size()));
  if (n < 0) {
    char err[1024] = {0};
    a.last_error(handle_, err, sizeof(err));
    ids->clear();
    return SpmStatus(err);
  }
  if (n > static_cast<int>(ids->size())) {
    ids->assign(n, 0);
    a.encode(handle_, text.data(), static_cast<long>(text.size()), ids->data(), n);
  }
  ids->resize(n);
  return SpmStatus();
}

int SentencePieceProcessor::GetPieceSize() const { return api().piece_size(handle_); }
float SentencePieceProcessor::GetScore(int id) const { return api().score(handle_, id); }
std::string SentencePieceProcessor::IdToPiece(int id) const {
  char buf[256];
  int n = api().id_to_piece(handle_, id, buf, sizeof(buf));
  if (n < static_cast<int>(sizeof(buf))) return std::string(buf, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(n) + 1, '\0');
  api().id_to_piece(handle_, id, big.data(), n + 1);
  big.resize(static_cast<size_t>(n));
  return big;
}
int SentencePieceProcessor::PieceToId(std::string_view piece) const {
  return api().piece_to_id(handle_, piece.data(), static_cast<long>(piece.size()));
}
bool SentencePieceProcessor::IsByte(int id) const { return api().is_byte(handle_, id) != 0; }
bool SentencePieceProcessor::IsControl(int id) const { return api().is_control(handle_, id) != 0; }
bool SentencePieceProcessor::IsUnknown(int id) const { return api().is_unknown(handle_, id) != 0; }
int SentencePieceProcessor::bos_id() const { return api().bos(handle_); }
int SentencePieceProcessor::eos_id() const { return api().eos(handle_); }
int SentencePieceProcessor::unk_id() const { return api().unk(handle_); }

}  // namespace candor::tokenizers
