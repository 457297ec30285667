// Atomic output files and writable output folders, with errors that say what is wrong.
#include "candor/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "candor/error.h"

namespace candor {
namespace {

std::string quoted(const std::string& option, const std::string& path) {
  return (option.empty() ? std::string() : option + " ") + "'" + path + "'";
}

// The folder holding `path` ("." for a bare name).
std::string parent_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// The nearest part of `path` (itself or a parent) that exists.
std::string existing_prefix(std::string path) {
  while (!path.empty() && path != "/" && path != "." && !exists(path)) path = parent_of(path);
  return path;
}

// Error for a failure `err` (errno) to create something in `folder` for `what`.
[[noreturn]] void throw_write_error(int err, const std::string& what, const std::string& folder) {
  const std::string reason = std::strerror(err);
  switch (err) {
    case ENOENT:
      throw Error(ErrorCode::kNotFound,
                  "cannot write " + what + ": the folder '" + folder + "' does not exist",
                  "create the folder first, or choose another path");
    case ENOTDIR:
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write " + what + ": '" + existing_prefix(folder) +
                      "' is a file, not a folder",
                  "choose a path inside a folder");
    case EACCES:
    case EPERM:
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write " + what + ": the folder '" + folder +
                      "' is not writable (" + reason + ")",
                  "choose a folder you can write to, or change its permissions");
    case EROFS:
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write " + what + ": '" + folder + "' is on a read-only file system",
                  "choose a folder on a writable disk");
    case ENOSPC:
    case EDQUOT:
      throw Error(ErrorCode::kResourceExhausted,
                  "cannot write " + what + ": no space left on the disk of '" + folder + "'",
                  "free some space or choose another folder");
    case EISDIR:
      throw Error(ErrorCode::kInvalidArgument, "cannot write " + what + ": it is a folder",
                  "give a file name, not a folder");
    default:
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write " + what + " in '" + folder + "': " + reason,
                  "check the path and its permissions");
  }
}

std::string temp_name(const std::string& path) {
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(::getpid()));
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), ".tmp.%d.%08x", static_cast<int>(::getpid()),
                static_cast<unsigned>(rng()));
  size_t slash = path.find_last_of('/');
  // A hidden file beside the target: the same file system, so rename() is atomic.
  if (slash == std::string::npos) return "." + path + suffix;
  return path.substr(0, slash + 1) + "." + path.substr(slash + 1) + suffix;
}

}  // namespace

struct AtomicFile::Impl {
  std::string tmp;
  std::ofstream out;
  bool committed = false;
};

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), impl_(std::make_unique<Impl>()) {
  if (is_dir(path_))
    throw Error(ErrorCode::kInvalidArgument, "cannot write '" + path_ + "': it is a folder",
                "give a file name, not a folder");
  impl_->tmp = temp_name(path_);
  // Open with open(2) first for an errno that says why.
  int fd = ::open(impl_->tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_write_error(errno, "'" + path_ + "'", parent_of(path_));
  ::close(fd);
  impl_->out.open(impl_->tmp, std::ios::binary | std::ios::trunc);
  if (!impl_->out) {
    const int err = errno;
    std::remove(impl_->tmp.c_str());
    throw_write_error(err ? err : EIO, "'" + path_ + "'", parent_of(path_));
  }
}

AtomicFile::~AtomicFile() {
  if (!impl_->committed) {
    impl_->out.close();
    std::remove(impl_->tmp.c_str());
  }
}

std::ostream& AtomicFile::stream() { return impl_->out; }

void AtomicFile::commit() {
  if (impl_->committed) return;
  impl_->out.flush();
  const bool ok = static_cast<bool>(impl_->out);
  impl_->out.close();
  if (!ok || impl_->out.fail()) {
    std::remove(impl_->tmp.c_str());
    // A stream says nothing of why: a full disk is by far the most common cause.
    throw Error(ErrorCode::kResourceExhausted,
                "cannot write '" + path_ + "': the write failed (is the disk full?)",
                "free some space or choose another folder");
  }
  int fd = ::open(impl_->tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(impl_->tmp.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(impl_->tmp.c_str());
    throw_write_error(err, "'" + path_ + "'", parent_of(path_));
  }
  impl_->committed = true;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile f(path);
  f.stream().write(content.data(), static_cast<std::streamsize>(content.size()));
  f.commit();
}

void prepare_output_dir(const std::string& dir, const std::string& option) {
  const std::string what = quoted(option.empty() ? "the output folder" : option, dir);
  if (dir.empty())
    throw Error(ErrorCode::kInvalidArgument,
                (option.empty() ? std::string("the output folder") : option) + " is empty",
                "give a folder");
  if (exists(dir) && !is_dir(dir))
    throw Error(ErrorCode::kInvalidArgument, what + " is a file, not a folder",
                "give a folder (it is created when missing)");
  // Create the missing parts one by one, so that a failure names the part at fault.
  std::vector<std::string> missing;
  for (std::string p = dir; !p.empty() && p != "/" && p != "." && !exists(p); p = parent_of(p))
    missing.push_back(p);
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) != 0 && errno != EEXIST) {
      const int err = errno;
      const std::string parent = parent_of(*it);
      if (err == ENOTDIR || (exists(parent) && !is_dir(parent)))
        throw Error(ErrorCode::kInvalidArgument,
                    "cannot create " + what + ": '" + existing_prefix(parent) +
                        "' is a file, not a folder",
                    "choose a path inside a folder");
      throw_write_error(err, *it == dir ? what : what + " (creating '" + *it + "')", parent);
    }
  }
  if (!is_dir(dir))
    throw Error(ErrorCode::kInvalidArgument, "cannot create " + what,
                "check the path and its permissions");
  // Writable? Create and remove a probe file (access(2) says yes to root on read-only mounts).
  const std::string probe = temp_name(dir + "/.candor-write-probe");
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_write_error(errno, "into " + what, dir);
  ::close(fd);
  ::unlink(probe.c_str());
}

void check_output_file(const std::string& path, const std::string& option) {
  const std::string what = quoted(option.empty() ? "the output file" : option, path);
  if (path.empty())
    throw Error(ErrorCode::kInvalidArgument,
                (option.empty() ? std::string("the output file") : option) + " is empty",
                "give a file name");
  if (is_dir(path))
    throw Error(ErrorCode::kInvalidArgument, what + " is a folder", "give a file name");
  const std::string folder = parent_of(path);
  if (!exists(folder)) {
    const std::string have = existing_prefix(folder);
    if (!have.empty() && exists(have) && !is_dir(have))
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write " + what + ": '" + have + "' is a file, not a folder",
                  "choose a path inside a folder");
    throw Error(ErrorCode::kNotFound,
                "cannot write " + what + ": the folder '" + folder + "' does not exist",
                "create the folder first, or choose another path");
  }
  if (!is_dir(folder))
    throw Error(ErrorCode::kInvalidArgument,
                "cannot write " + what + ": '" + folder + "' is a file, not a folder",
                "choose a path inside a folder");
  const std::string probe = temp_name(path);
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_write_error(errno, what, folder);
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace candor
