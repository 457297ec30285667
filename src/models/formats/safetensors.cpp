// safetensors reader (memory-mapped, single file or sharded) and writer.
#include "models/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "candor/error.h"
#include "candor/files.h"

namespace candor {
namespace fs = std::filesystem;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

at::Tensor empty_weight(const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * 4;
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < 2 * kHuge) return at::empty(shape, at::kFloat);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) {
    throw Error(ErrorCode::kResourceExhausted,
                "out of memory allocating " + std::to_string(bytes) + " bytes of weights");
  }
  ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: ignored where THP is off
  return at::from_blob(
      p, shape, [](void* q) { std::free(q); }, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor TensorSource::load(const std::string& name) const {
  at::Tensor t = empty_weight(shape(name));
  load_into(name, t);
  return t;
}

at::Tensor TensorSource::load_rows(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts) const {
  int64_t rows = 0;
  for (const auto& [name, shape] : parts) {
    check_shape(name, shape);
    rows += shape[0];
  }
  std::vector<int64_t> shape = parts.at(0).second;
  shape[0] = rows;
  at::Tensor out = empty_weight(shape);
  int64_t at_row = 0;
  for (const auto& [name, s] : parts) {
    load_into(name, out.narrow(0, at_row, s[0]));
    at_row += s[0];
  }
  return out;
}

at::Tensor TensorSource::load(const std::string& name, const std::vector<int64_t>& want) const {
  check_shape(name, want);
  return load(name);
}

void TensorSource::check_shape(const std::string& name, const std::vector<int64_t>& want) const {
  if (!has(name)) {
    throw Error(
        ErrorCode::kInvalidArgument,
        where() + ": tensor '" + name + "' is missing (expected shape " + shape_string(want) + ")",
        "the checkpoint does not match its config.json, or is incomplete");
  }
  std::vector<int64_t> got = shape(name);
  if (got != want) {
    throw Error(ErrorCode::kInvalidArgument,
                where() + ": tensor '" + name + "' has shape " + shape_string(got) +
                    " but the configuration implies " + shape_string(want),
                "the checkpoint does not match its config.json");
  }
}

// ---- MappedFile --------------------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorCode::kNotFound, "cannot open '" + path + "': " + std::strerror(errno),
                "check the path");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(ErrorCode::kNotFound, "cannot stat '" + path + "'");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    // Private and writable: tensors may view the mapping; a write copies the page.
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error(ErrorCode::kResourceExhausted,
                  "cannot memory-map '" + path + "': " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  fd_ = fd;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

at::Tensor MappedFile::map_f32(size_t offset, const std::vector<int64_t>& shape) const {
  std::shared_ptr<const MappedFile> keep = shared_from_this();
  return at::from_blob(
      const_cast<uint8_t*>(data_ + offset), shape, [keep](void*) {},
      at::TensorOptions().dtype(at::kFloat));
}

void MappedFile::read(size_t offset, size_t n, void* dst) const {
  if (offset > size_ || n > size_ - offset) {
    throw Error(ErrorCode::kInvalidArgument, "'" + path_ + "': read of " + std::to_string(n) +
                                                 " bytes at offset " + std::to_string(offset) +
                                                 " is outside the file (" + std::to_string(size_) +
                                                 " bytes)");
  }
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      throw Error(ErrorCode::kInvalidArgument,
                  "reading '" + path_ + "' at offset " + std::to_string(offset) + " failed" +
                      (got < 0 ? std::string(": ") + std::strerror(errno) : " (file shrank?)"));
    }
    out += got;
    offset += static_cast<size_t>(got);
    n -= static_cast<size_t>(got);
  }
}

void MappedFile::release(size_t offset, size_t n) const {
  if (!data_ || n == 0) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t begin = (offset + page - 1) / page * page;  // whole pages inside the range only
  size_t end = (offset + n) / page * page;
  if (end > begin) ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

// ---- reader ------------------------------------------------------------------------------

namespace {

// Bytes per element of the safetensors dtypes; 0 for unknown ones.
size_t element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},      {"BOOL", 1},
      {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

Error malformed(const std::string& path, const std::string& problem) {
  return Error(ErrorCode::kInvalidArgument, "safetensors file '" + path + "': " + problem,
               "the file is corrupt or not a safetensors file; re-download or re-export it");
}

}  // namespace

void SafetensorsArchive::add_file(const std::string& path,
                                  const std::vector<std::string>* expected) {
  auto file = std::make_shared<MappedFile>(path);
  const size_t size = file->size();
  if (size < 8) throw malformed(path, "truncated: " + std::to_string(size) + " bytes, no header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > size - 8) {
    throw malformed(path, "truncated: the header claims " + std::to_string(header_len) +
                              " bytes but the file has " + std::to_string(size - 8) +
                              " after the length field");
  }
  const size_t data_start = 8 + header_len;
  const size_t data_size = size - data_start;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(file->data()) + 8,
                                   reinterpret_cast<const char*>(file->data()) + data_start);
  } catch (const nlohmann::json::exception& e) {
    throw malformed(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw malformed(path, "header is not a JSON object");
  const size_t index = files_.size();
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (index == 0 && v.is_object()) {
        for (auto m = v.begin(); m != v.end(); ++m)
          if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() || !v.contains("shape") ||
        !v["shape"].is_array() || !v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      throw malformed(path, "tensor '" + name + "' lacks dtype, shape or data_offsets");
    }
    Entry e;
    e.dtype = v["dtype"].get<std::string>();
    const size_t es = element_size(e.dtype);
    if (es == 0) throw malformed(path, "tensor '" + name + "' has unknown dtype '" + e.dtype + "'");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40)) {
        throw malformed(path, "tensor '" + name + "' has an invalid shape " + v["shape"].dump());
      }
      e.shape.push_back(d.get<int64_t>());
      numel *= d.get<uint64_t>();
      if (numel > (uint64_t{1} << 44)) throw malformed(path, "tensor '" + name + "' is too large");
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      throw malformed(path, "tensor '" + name + "' has invalid data_offsets " + off.dump());
    }
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size) {
      throw malformed(path, "tensor '" + name + "': data_offsets [" + std::to_string(b) + ", " +
                                std::to_string(en) + "] out of range (the data section has " +
                                std::to_string(data_size) + " bytes)");
    }
    if (en - b != numel * es) {
      throw malformed(path, "tensor '" + name + "': data_offsets span " + std::to_string(en - b) +
                                " bytes but dtype " + e.dtype + " and shape " +
                                shape_string(e.shape) + " need " + std::to_string(numel * es));
    }
    e.begin = data_start + b;
    e.end = data_start + en;
    e.file = index;
    if (expected) {
      // Sharded: a tensor may only come from the file the index names for it.
      if (std::find(expected->begin(), expected->end(), name) == expected->end()) continue;
    }
    if (entries_.count(name)) throw malformed(path, "tensor '" + name + "' appears twice");
    entries_[name] = e;
    order_.push_back(name);
  }
  if (expected) {
    for (const auto& n : *expected) {
      if (!entries_.count(n)) {
        throw malformed(path, "tensor '" + n + "' is listed for this file in the index but absent");
      }
    }
  }
  files_.push_back(std::move(file));
}

std::unique_ptr<SafetensorsArchive> SafetensorsArchive::open(const std::string& path_in) {
  fs::path path(path_in);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "model.safetensors.index.json", ec)) {
      path = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors", ec)) {
      path = path / "model.safetensors";
    } else {
      throw Error(
          ErrorCode::kNotFound,
          "folder '" + path_in + "' holds no model.safetensors or model.safetensors.index.json",
          "convert the checkpoint to safetensors (pytorch_model.bin is not read)");
    }
  }
  auto a = std::unique_ptr<SafetensorsArchive>(new SafetensorsArchive());
  a->where_ = path.string();
  const std::string name = path.filename().string();
  if (name.size() > 5 && name.substr(name.size() - 5) == ".json") {
    std::ifstream f(path);
    if (!f) throw Error(ErrorCode::kNotFound, "cannot open '" + path.string() + "'");
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  "safetensors index '" + path.string() + "' is not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "safetensors index '" + path.string() + "' has no \"weight_map\" object");
    }
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        throw Error(ErrorCode::kInvalidArgument, "safetensors index '" + path.string() +
                                                     "': weight_map entry '" + it.key() +
                                                     "' is not a file name");
      }
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == "..") {
        throw Error(ErrorCode::kInvalidArgument, "safetensors index '" + path.string() +
                                                     "': shard name '" + file +
                                                     "' is not a plain file name");
      }
      by_file[file].push_back(it.key());
    }
    if (by_file.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "safetensors index '" + path.string() + "' lists no tensors");
    }
    for (const auto& [file, names] : by_file) {
      a->add_file((path.parent_path() / file).string(), &names);
    }
  } else {
    a->add_file(path.string(), nullptr);
  }
  return a;
}

bool SafetensorsArchive::has(const std::string& name) const { return entries_.count(name) > 0; }

std::vector<std::string> SafetensorsArchive::names() const { return order_; }

const SafetensorsArchive::Entry& SafetensorsArchive::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    throw Error(ErrorCode::kNotFound, where_ + ": no tensor named '" + name + "'");
  }
  return it->second;
}

std::vector<int64_t> SafetensorsArchive::shape(const std::string& name) const {
  return entry(name).shape;
}

std::string SafetensorsArchive::dtype(const std::string& name) const { return entry(name).dtype; }

std::string SafetensorsArchive::dtype_summary() const {
  std::set<std::string> kinds;
  for (const auto& [n, e] : entries_) {
    std::string d = e.dtype;
    for (auto& ch : d) ch = static_cast<char>(std::tolower(ch));
    kinds.insert(d);
  }
  std::string s;
  for (const auto& k : kinds) s += (s.empty() ? "" : "+") + k;
  return s;
}

namespace {

at::ScalarType scalar_type_of(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F64") return at::kDouble;
  return at::ScalarType::Undefined;
}

}  // namespace

void SafetensorsArchive::load_into(const std::string& name, at::Tensor dst) const {
  const Entry& e = entry(name);
  const at::ScalarType src = scalar_type_of(e.dtype);
  if (src == at::ScalarType::Undefined) {
    throw Error(ErrorCode::kUnsupported,
                where_ + ": tensor '" + name + "' has dtype " + e.dtype +
                    ", which candor does not load as a weight (F32, F16, BF16, F64 are read)",
                "convert the checkpoint to a floating-point dtype");
  }
  const int64_t numel = dst.numel();
  const size_t src_es = at::elementSize(src);
  if (!dst.is_contiguous() || static_cast<size_t>(numel) * src_es != e.end - e.begin) {
    throw Error(ErrorCode::kInternal, where_ + ": tensor '" + name + "' read into a wrong buffer");
  }
  const MappedFile& f = *files_[e.file];
  if (src == dst.scalar_type()) {  // straight into the final storage
    f.read(e.begin, e.end - e.begin, dst.data_ptr());
    return;
  }
  // Converted through a small buffer, chunk by chunk.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{4} << 20) / static_cast<int64_t>(src_es));
  at::Tensor buf = at::empty({std::min(chunk, numel)}, at::TensorOptions().dtype(src));
  at::Tensor flat = dst.view({numel});
  for (int64_t off = 0; off < numel; off += chunk) {
    const int64_t n = std::min(chunk, numel - off);
    f.read(e.begin + static_cast<size_t>(off) * src_es, static_cast<size_t>(n) * src_es,
           buf.data_ptr());
    flat.narrow(0, off, n).copy_(buf.narrow(0, 0, n));
  }
}

at::Tensor SafetensorsArchive::load(const std::string& name) const {
  const Entry& e = entry(name);
  if (e.dtype == "F32" && e.begin % 4 == 0) return files_[e.file]->map_f32(e.begin, e.shape);
  return TensorSource::load(name);
}

at::Tensor SafetensorsArchive::load_as(const std::string& name, at::ScalarType type) const {
  at::Tensor out = type == at::kFloat
                       ? empty_weight(entry(name).shape)
                       : at::empty(entry(name).shape, at::TensorOptions().dtype(type));
  load_into(name, out);
  return out;
}

// ---- writer ------------------------------------------------------------------------------

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  size_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    std::string dtype;
    switch (t0.scalar_type()) {
      case at::kFloat:
        dtype = "F32";
        break;
      case at::kHalf:
        dtype = "F16";
        break;
      case at::kBFloat16:
        dtype = "BF16";
        break;
      default:
        throw Error(ErrorCode::kInvalidArgument,
                    "cannot write tensor '" + name + "' to '" + path + "': dtype " +
                        std::string(c10::toString(t0.scalar_type())) + " is not F32, F16 or BF16");
    }
    at::Tensor t = t0.detach().contiguous();
    const size_t n = t.numel() * t.element_size();
    header[name] = {
        {"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(t);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';  // data starts 8-byte aligned
  AtomicFile file(path);  // never a half-written model under `path`
  std::ostream& f = file.stream();
  uint64_t len = h.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& t : data) {
    f.write(static_cast<const char*>(t.data_ptr()),
            static_cast<std::streamsize>(t.numel() * t.element_size()));
  }
  file.commit();
}

}  // namespace candor
