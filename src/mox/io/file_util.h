#pragma once
// File helpers shared by the loaders and writers in io/:
// - AtomicFileWriter: writes to a temporary file beside the target, fsyncs it and renames it
//   over the target, so that a crash or an exception mid-save never leaves a half-written
//   file where a good one (e.g. the last checkpoint) used to be.
// - MappedFile: a read-only view of a whole file (mmap), for loaders of large files.
// Every failure throws mox::Error naming the file.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mox::io {

class AtomicFileWriter {
 public:
  // Creates "<dir>/.<name>.tmp.<pid>.<n>" in the target's directory (rename is only atomic
  // within one file system). Throws if the directory does not exist or is not writable.
  explicit AtomicFileWriter(std::string path);
  // Removes the temporary file unless commit() succeeded; the target is left untouched.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t nbytes);
  void write(std::string_view s) { write(s.data(), s.size()); }
  uint64_t bytes_written() const { return written_; }
  // fsync(tmp) + rename(tmp, path) + fsync(dir). After this the writer is finished.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes `contents` to `path` atomically (see AtomicFileWriter).
void write_file_atomic(const std::string& path, std::string_view contents);

// Replaces the folder `dir` as a whole: fill(tmp) writes the new contents into dir + ".tmp",
// then dir moves to dir + ".old", tmp to dir, and dir.old is removed. At every instant one
// of dir and dir.old is complete (checkpoints). Throws mox::Error naming dir on failure.
void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp)>& fill);
// The folder to read after write_dir_atomic: dir when it holds `marker` (a file written
// last), else dir + ".old" when that does (a swap was interrupted), else "".
std::string complete_dir(const std::string& dir, const std::string& marker);

// Whole-file memory map. Mapped privately and copy-on-write, so tensors that view the
// mapping may be modified in place without touching the file; the mapping refers to the
// file's inode, so it stays valid when the file is later replaced by an atomic rename.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  uint8_t* mutable_data() const { return static_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// The whole file as a string (small text files: configs, vocabularies).
std::string read_file(const std::string& path);

}  // namespace mox::io
