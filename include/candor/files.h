// Output files and folders: every file candor writes for the user appears whole or not at all
// (written into a temporary file beside it, then renamed over it), and a folder is checked for
// writability before the work that fills it starts. Errors name the path and what is wrong
// (the folder is missing, is a file, is not writable, the disk is full), never a raw
// std::filesystem or stream error. Part of candor_core.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace candor {

// Writes `content` to `path` atomically (a temporary file in the same folder, flushed, then
// renamed over `path`): a reader sees the old file or the whole new one, never an empty or
// half-written one. Throws Error naming `path` and the reason; the temporary file is removed.
void write_file_atomic(const std::string& path, std::string_view content);

// An output file written as a stream and published by commit(): until then the bytes go to a
// temporary file beside `path`, removed when the AtomicFile is destroyed uncommitted (an error
// or an interruption leaves no partial file under `path`). Not copyable.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ostream& stream();
  // Flushes, checks every write succeeded and renames the file into place; throws Error naming
  // the path (for example when the disk is full).
  void commit();
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

// Makes the output folder `dir` (and its parents) and checks that files can be created in it,
// by creating and removing a probe file. `option` names it in messages (e.g. "--out"; "" for
// none). Throws Error(kInvalidArgument) naming the folder and the reason: a path under a file,
// a folder that cannot be created, one that is not writable or on a read-only file system.
void prepare_output_dir(const std::string& dir, const std::string& option = "");

// Checks, before the work that produces it, that the output file `path` can be written: its
// folder exists, is a folder and is writable, and `path` is not a folder. Creates nothing.
// Throws Error naming `option` and the path.
void check_output_file(const std::string& path, const std::string& option = "");

}  // namespace candor
