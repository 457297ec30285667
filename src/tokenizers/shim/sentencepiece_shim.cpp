// A C interface over libsentencepiece, built as its own shared object and loaded with dlmopen
// into a separate link namespace. Debian's libsentencepiece carries a private copy of protobuf
// whose exported symbols clash with the libprotobuf that libtorch loads (a crash at start-up
// whichever is loaded first); isolating it in its own namespace keeps both intact.
#include <sentencepiece_processor.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

struct Handle {
  sentencepiece::SentencePieceProcessor sp;
  std::string last_error;
};

int copy_out(const std::string& s, char* buf, int cap) {
  if (cap > 0) {
    size_t n = std::min(s.size(), static_cast<size_t>(cap - 1));
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  }
  return static_cast<int>(s.size());
}

}  // namespace

extern "C" {

// Loads a serialized ModelProto. Returns a handle, or null with the reason in err.
void* candor_spm_load(const char* data, long size, char* err, int err_cap) {
  auto* h = new Handle;
  auto status = h->sp.LoadFromSerializedProto(std::string_view(data, static_cast<size_t>(size)));
  if (!status.ok()) {
    copy_out(status.ToString(), err, err_cap);
    delete h;
    return nullptr;
  }
  return h;
}

void candor_spm_free(void* h) { delete static_cast<Handle*>(h); }

int candor_spm_piece_size(void* h) { return static_cast<Handle*>(h)->sp.GetPieceSize(); }
float candor_spm_score(void* h, int id) { return static_cast<Handle*>(h)->sp.GetScore(id); }
int candor_spm_is_byte(void* h, int id) { return static_cast<Handle*>(h)->sp.IsByte(id); }
int candor_spm_is_control(void* h, int id) { return static_cast<Handle*>(h)->sp.IsControl(id); }
int candor_spm_is_unknown(void* h, int id) { return static_cast<Handle*>(h)->sp.IsUnknown(id); }
int candor_spm_bos(void* h) { return static_cast<Handle*>(h)->sp.bos_id(); }
int candor_spm_eos(void* h) { return static_cast<Handle*>(h)->sp.eos_id(); }
int candor_spm_unk(void* h) { return static_cast<Handle*>(h)->sp.unk_id(); }
int candor_spm_piece_to_id(void* h, const char* piece, long len) {
  return static_cast<Handle*>(h)->sp.PieceToId(std::string_view(piece, static_cast<size_t>(len)));
}
// Writes the piece (NUL-terminated, truncated to cap) and returns its full length.
int candor_spm_id_to_piece(void* h, int id, char* buf, int cap) {
  return copy_out(static_cast<Handle*>(h)->sp.IdToPiece(id), buf, cap);
}
// Encodes text into ids. Returns the number of ids (written up to cap), or -1 with the reason
// retrievable by candor_spm_last_error.
int candor_spm_encode(void* h, const char* text, long len, int* ids, int cap) {
  auto* handle = static_cast<Handle*>(h);
  std::vector<int> out;
  auto status = handle->sp.Encode(std::string_view(text, static_cast<size_t>(len)), &out);
  if (!status.ok()) {
    handle->last_error = status.ToString();
    return -1;
  }
  for (size_t i = 0; i < out.size() && static_cast<int>(i) < cap; ++i) ids[i] = out[i];
  return static_cast<int>(out.size());
}
int candor_spm_last_error(void* h, char* buf, int cap) {
  return copy_out(static_cast<Handle*>(h)->last_error, buf, cap);
}

}  // extern "C"
