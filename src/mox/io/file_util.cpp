#include "mox/io/file_util.h"

#include <filesystem>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "mox/tensor/error.h"

namespace mox::io {

namespace {

std::string errno_str() { return std::strerror(errno); }

// "a/b/c.st" -> {"a/b", "c.st"}; "c.st" -> {".", "c.st"}
std::pair<std::string, std::string> split_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  if (slash == 0) return {"/", path.substr(1)};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // durability of the rename is best effort; the rename itself succeeded
  ::fsync(fd);
  ::close(fd);
}

std::atomic<uint64_t> g_tmp_counter{0};

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  MOX_CHECK(!path_.empty(), "write", "empty file path");
  auto [dir, name] = split_dir(path_);
  MOX_CHECK(!name.empty(), path_, "path names a directory, not a file");
  tmp_path_ = (dir == "/" ? "/" : dir + "/") + "." + name + ".tmp." + std::to_string(::getpid()) +
              "." + std::to_string(g_tmp_counter++);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path_, "cannot create temporary file " + tmp_path_ + ": " + errno_str());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t nbytes) {
  MOX_CHECK(fd_ >= 0, path_, "write after commit");
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    // Linux writes at most ~2 GiB per call; loop for partial writes and EINTR.
    ssize_t n = ::write(fd_, p, std::min<size_t>(nbytes, size_t(1) << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path_, "write failed: " + errno_str());
    }
    p += n;
    nbytes -= size_t(n);
    written_ += uint64_t(n);
  }
}

void AtomicFileWriter::commit() {
  MOX_CHECK(fd_ >= 0, path_, "commit called twice");
  if (::fsync(fd_) != 0) throw Error(path_, "fsync failed: " + errno_str());
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw Error(path_, "close failed: " + errno_str());
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    throw Error(path_, "cannot rename " + tmp_path_ + " into place: " + errno_str());
  committed_ = true;
  fsync_dir(split_dir(path_).first);
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFileWriter w(path);
  w.write(contents);
  w.commit();
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path, "cannot open: " + errno_str());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string e = errno_str();
    ::close(fd);
    throw Error(path, "cannot stat: " + e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path, "is a directory, not a file");
  }
  m->size_ = size_t(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string e = errno_str();
      ::close(fd);
      throw Error(path, "cannot memory-map " + std::to_string(m->size_) + " bytes: " + e);
    }
    m->data_ = p;
  }
  ::close(fd);  // the mapping keeps the file alive
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

std::string read_file(const std::string& path) {
  auto m = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(m->data()), m->size());
}

void write_dir_atomic(const std::string& dir, const std::function<void(const std::string&)>& fill) {
  namespace fs = std::filesystem;
  const std::string tmp = dir + ".tmp", old = dir + ".old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  MOX_CHECK(!ec, dir, "cannot create the folder " + tmp + ": " + ec.message());
  fill(tmp);
  fs::remove_all(old, ec);
  if (fs::exists(dir)) {
    fs::rename(dir, old, ec);
    MOX_CHECK(!ec, dir, "cannot move the previous folder aside: " + ec.message());
  }
  fs::rename(tmp, dir, ec);
  MOX_CHECK(!ec, dir, "cannot move the new folder into place: " + ec.message());
  fs::remove_all(old, ec);
}

std::string complete_dir(const std::string& dir, const std::string& marker) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(dir) / marker)) return dir;
  if (fs::exists(fs::path(dir + ".old") / marker)) return dir + ".old";
  return "";
}

}  // namespace mox::io
