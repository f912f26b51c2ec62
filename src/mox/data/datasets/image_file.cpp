#include "mox/data/datasets/image_file.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::data {
namespace {

// Decoded images larger than this are refused before anything is allocated, so a corrupt or
// hostile header (a PNG claims any size in 25 bytes) cannot exhaust memory.
constexpr int64_t kMaxPixels = int64_t(1) << 28;

std::string size_text(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

void check_pixels(const std::string& path, const char* format, int64_t w, int64_t h) {
  MOX_CHECK(w > 0 && h > 0, path, std::string(format) + " image has size " + size_text(w, h) + ", expected positive width and height");
  MOX_CHECK(w <= kMaxPixels / h, path,
            std::string(format) + " image of " + size_text(w, h) + " is too large (at most " + std::to_string(kMaxPixels) +
                " pixels)");
}

// ---------------------------------------------------------------------------------------
// PGM / PPM (netpbm): "P5" or "P2" grey, "P6" or "P3" RGB. The header is magic, width, height
// and maxval separated by whitespace, where '#' starts a comment that runs to the end of the
// line. Binary data follows one whitespace character after maxval: one byte per sample when
// maxval < 256, else two bytes big-endian. ASCII data is decimal numbers.

class PnmReader {
 public:
  PnmReader(const std::string& path, const uint8_t* data, size_t size) : path_(path), d_(data), n_(size) {}

  Tensor read() {
    const char kind = char(d_[1]);
    const bool grey = kind == '2' || kind == '5';
    const bool ascii = kind == '2' || kind == '3';
    format_ = std::string(grey ? "PGM" : "PPM") + " (P" + kind + ")";
    pos_ = 2;
    const int64_t w = header_number("width");
    const int64_t h = header_number("height");
    const int64_t maxval = header_number("maxval");
    MOX_CHECK(maxval >= 1 && maxval <= 65535, path_, format_ + " maxval " + std::to_string(maxval) + " is out of range (1..65535)");
    check_pixels(path_, format_.c_str(), w, h);
    const int64_t C = grey ? 1 : 3;
    const int64_t count = C * w * h;
    Tensor out = empty({C, h, w}, DType::F32);
    float* dst = out.data<float>();
    const float scale = float(maxval);
    // Samples arrive interleaved (RGBRGB...); the tensor is planar [C, H, W].
    const int64_t plane = w * h;
    auto put = [&](int64_t i, uint32_t v) {
      MOX_CHECK(v <= uint32_t(maxval), path_,
                format_ + " sample " + std::to_string(i) + " (pixel " + std::to_string(i / C) + ") is " + std::to_string(v) +
                    ", above maxval " + std::to_string(maxval));
      dst[(i % C) * plane + i / C] = float(v) / scale;  // divided, so that q/255.0f reads back exactly
    };
    if (ascii) {
      for (int64_t i = 0; i < count; ++i) put(i, uint32_t(ascii_sample(i, count)));
      return out;
    }
    // Exactly one whitespace character separates maxval from the binary data.
    MOX_CHECK(pos_ < n_ && is_space(d_[pos_]), path_, format_ + " header: expected one whitespace character after maxval");
    ++pos_;
    const int64_t bytes = maxval > 255 ? 2 : 1;
    const uint64_t need = uint64_t(count) * uint64_t(bytes);
    MOX_CHECK(n_ - pos_ >= need, path_,
              "truncated " + format_ + " data: " + size_text(w, h) + " needs " + std::to_string(need) +
                  " bytes of pixels after the header, the file has " + std::to_string(n_ - pos_));
    const uint8_t* p = d_ + pos_;
    if (bytes == 1) {
      for (int64_t i = 0; i < count; ++i) put(i, p[i]);
    } else {
      for (int64_t i = 0; i < count; ++i) put(i, uint32_t(p[2 * i]) << 8 | p[2 * i + 1]);
    }
    return out;
  }

 private:
  static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

  // Skips whitespace and comments.
  void skip_blank() {
    while (pos_ < n_) {
      if (is_space(d_[pos_])) {
        ++pos_;
      } else if (d_[pos_] == '#') {
        while (pos_ < n_ && d_[pos_] != '\n' && d_[pos_] != '\r') ++pos_;
      } else {
        break;
      }
    }
  }

  // A decimal number; nullopt-like -1 at end of file, throws on anything else.
  int64_t number(const std::string& what) {
    skip_blank();
    if (pos_ >= n_) return -1;
    MOX_CHECK(d_[pos_] >= '0' && d_[pos_] <= '9', path_,
              format_ + ": expected " + what + " as a decimal number at byte " + std::to_string(pos_) + ", found " +
                  describe(d_[pos_]));
    int64_t v = 0;
    while (pos_ < n_ && d_[pos_] >= '0' && d_[pos_] <= '9') {
      v = v * 10 + (d_[pos_] - '0');
      MOX_CHECK(v <= (int64_t(1) << 31), path_, format_ + ": " + what + " at byte " + std::to_string(pos_) + " is too large");
      ++pos_;
    }
    return v;
  }

  int64_t header_number(const char* field) {
    const int64_t v = number(field);
    MOX_CHECK(v >= 0, path_, "truncated " + format_ + " header: the file ends before the " + field);
    return v;
  }

  int64_t ascii_sample(int64_t i, int64_t count) {
    const int64_t v = number("sample " + std::to_string(i));
    MOX_CHECK(v >= 0, path_,
              "truncated " + format_ + " data: the file ends after " + std::to_string(i) + " of " + std::to_string(count) +
                  " samples");
    return v;
  }

  static std::string describe(uint8_t c) {
    if (c >= 0x21 && c < 0x7f) return std::string("'") + char(c) + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", c);
    return buf;
  }

  const std::string& path_;
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  std::string format_;
};

// ---------------------------------------------------------------------------------------
// PNG through libpng. libpng reports errors by calling an error function that must not
// return; it longjmps back to the setjmp in the calling function. The functions that call
// setjmp hold no C++ objects with destructors (a longjmp over one would be undefined), so
// buffers are allocated by their callers between the phases.

struct PngIo {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  char message[256] = {0};
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  if (io && !io->message[0]) std::snprintf(io->message, sizeof io->message, "%s", msg);
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}  // benign (bad gamma chunk, ...)

void png_read_fn(png_structp png, png_bytep out, size_t len) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (len > io->size - io->pos) {
    std::snprintf(io->message, sizeof io->message,
                  "truncated PNG: needs %zu bytes at offset %zu but the file ends at %zu bytes", len, io->pos, io->size);
    png_longjmp(png, 1);
  }
  std::memcpy(out, io->data + io->pos, len);
  io->pos += len;
}

// What the reader is asked to produce.
enum class PngTarget { Native, Rgba8 };

struct PngInfo {
  png_uint_32 width = 0, height = 0;
  int channels = 0, bit_depth = 0;  // after the transforms
  size_t rowbytes = 0;
};

// Phase 1: signature, header chunks and the transforms. Returns false (with io->message) on error.
bool png_begin(png_structp png, png_infop info, PngTarget target, PngInfo* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // sizes are checked against kMaxPixels instead
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  // Palette -> RGB, grey below 8 bits -> 8 bits, tRNS -> alpha (stripped or kept below).
  png_set_expand(png);
  if (target == PngTarget::Rgba8) {
    if (depth == 16) png_set_scale_16(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_filler(png, 0xff, PNG_FILLER_AFTER);  // no-op where an alpha channel exists
  } else {
    png_set_strip_alpha(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->channels = png_get_channels(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  out->rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Phase 2: the pixels into rows the caller allocated.
bool png_finish(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  return true;
}

class PngReader {
 public:
  PngReader(const std::string& path, const uint8_t* data, size_t size) : path_(path) {
    io_.data = data;
    io_.size = size;
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io_, png_error_fn, png_warning_fn);
    MOX_CHECK(png_, path_, "cannot create a libpng reader");
    info_ = png_create_info_struct(png_);
    if (!info_) {
      png_destroy_read_struct(&png_, nullptr, nullptr);
      throw Error(path_, "cannot create a libpng info struct");
    }
    png_set_read_fn(png_, &io_, png_read_fn);
  }
  ~PngReader() { png_destroy_read_struct(&png_, &info_, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;

  // Returns the rows, packed: height * rowbytes bytes.
  std::vector<uint8_t> read(PngTarget target, PngInfo* info) {
    if (!png_begin(png_, info_, target, info)) fail();
    check_pixels(path_, "PNG", info->width, info->height);
    std::vector<uint8_t> pixels(size_t(info->height) * info->rowbytes);
    std::vector<png_bytep> rows(info->height);
    for (size_t y = 0; y < rows.size(); ++y) rows[y] = pixels.data() + y * info->rowbytes;
    if (!png_finish(png_, info_, rows.data())) fail();
    return pixels;
  }

 private:
  [[noreturn]] void fail() {
    std::string msg = io_.message[0] ? io_.message : "corrupt PNG";
    if (msg.find("PNG") == std::string::npos) msg = "bad PNG: " + msg;
    throw Error(path_, msg);
  }

  const std::string& path_;
  PngIo io_;
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

bool is_png(const uint8_t* d, size_t n) { return n >= 8 && std::memcmp(d, kPngSignature, 8) == 0; }

Tensor read_png(const std::string& path, const uint8_t* data, size_t size) {
  PngReader reader(path, data, size);
  PngInfo info;
  std::vector<uint8_t> px = reader.read(PngTarget::Native, &info);
  const int64_t C = info.channels, H = info.height, W = info.width;
  MOX_CHECK((C == 1 || C == 3) && (info.bit_depth == 8 || info.bit_depth == 16), path,
            "unexpected PNG layout after conversion: " + std::to_string(C) + " channels of " +
                std::to_string(info.bit_depth) + " bits");
  Tensor out = empty({C, H, W}, DType::F32);
  float* dst = out.data<float>();
  const int64_t plane = H * W;
  const bool wide = info.bit_depth == 16;
  const float scale = wide ? 65535.0f : 255.0f;
  for (int64_t y = 0; y < H; ++y) {
    const uint8_t* row = px.data() + size_t(y) * info.rowbytes;
    for (int64_t x = 0; x < W; ++x) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t s = x * C + c;
        const uint32_t v = wide ? (uint32_t(row[2 * s]) << 8 | row[2 * s + 1]) : row[s];  // PNG is big-endian
        dst[c * plane + y * W + x] = float(v) / scale;
      }
    }
  }
  return out;
}

std::string magic_text(const uint8_t* d, size_t n) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%s0x%02x", i ? " " : "", d[i]);
    s += buf;
  }
  return s.empty() ? "(empty file)" : s;
}

// Phase 2 of writing: everything libpng needs is prepared by the caller.
struct PngOut {
  std::vector<uint8_t>* bytes = nullptr;
  char message[256] = {0};
};

void png_write_fn(png_structp png, png_bytep data, size_t len) {
  auto* out = static_cast<PngOut*>(png_get_io_ptr(png));
  out->bytes->insert(out->bytes->end(), data, data + len);
}
void png_flush_fn(png_structp) {}

void png_write_error_fn(png_structp png, png_const_charp msg) {
  auto* out = static_cast<PngOut*>(png_get_error_ptr(png));
  if (out && !out->message[0]) std::snprintf(out->message, sizeof out->message, "%s", msg);
  png_longjmp(png, 1);
}

bool png_encode(png_structp png, png_infop info, PngOut* out, png_uint_32 w, png_uint_32 h, int color, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, png_write_fn, png_flush_fn);
  png_set_IHDR(png, info, w, h, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

Tensor read_image(const std::string& path) {
  auto file = io::MappedFile::open(path);
  return decode_image(path, file->data(), file->size());
}

Tensor decode_image(const std::string& name, const uint8_t* d, size_t n) {
  const std::string& path = name;
  if (is_png(d, n)) return read_png(path, d, n);
  if (n >= 2 && d[0] == 'P' && (d[1] == '2' || d[1] == '3' || d[1] == '5' || d[1] == '6'))
    return PnmReader(path, d, n).read();
  throw Error(path, "not a PNG, PGM or PPM image: bad magic " + magic_text(d, n) +
                        " (expected the PNG signature 0x89 'PNG' or 'P2', 'P3', 'P5', 'P6')");
}

Rgba8 read_png_rgba8(const std::string& path) {
  auto file = io::MappedFile::open(path);
  MOX_CHECK(is_png(file->data(), file->size()), path,
            "not a PNG file: bad signature " + magic_text(file->data(), file->size()));
  PngReader reader(path, file->data(), file->size());
  PngInfo info;
  Rgba8 out;
  std::vector<uint8_t> px = reader.read(PngTarget::Rgba8, &info);
  MOX_CHECK(info.channels == 4 && info.bit_depth == 8 && info.rowbytes == size_t(info.width) * 4, path,
            "unexpected PNG layout after conversion to RGBA: " + std::to_string(info.channels) + " channels of " +
                std::to_string(info.bit_depth) + " bits");
  out.width = info.width;
  out.height = info.height;
  out.pixels = std::move(px);
  return out;
}

void write_png(const std::string& path, const Tensor& image) {
  const std::string where = "write_png " + path;
  MOX_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3), where,
            "expected a [C, H, W] image with C = 1 or 3, got " + image.desc());
  MOX_CHECK(is_floating(image.dtype()), where, "expected floating-point values in [0, 1], got " + image.desc());
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  check_pixels(where, "PNG", W, H);
  const std::vector<float> v = image.to_vector<float>();
  const int64_t plane = H * W;
  std::vector<uint8_t> px(size_t(C * plane));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t i = 0; i < plane; ++i) {
      const float f = v[size_t(c * plane + i)];
      MOX_CHECK(!std::isnan(f), where,
                "channel " + std::to_string(c) + " pixel (" + std::to_string(i / W) + ", " + std::to_string(i % W) + ") is NaN");
      px[size_t(i * C + c)] = uint8_t(std::lround(std::clamp(f, 0.0f, 1.0f) * 255.0f));
    }
  }
  std::vector<png_bytep> rows(static_cast<size_t>(H));
  for (int64_t y = 0; y < H; ++y) rows[size_t(y)] = px.data() + size_t(y * W * C);

  std::vector<uint8_t> bytes;
  PngOut out;
  out.bytes = &bytes;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &out, png_write_error_fn, png_warning_fn);
  MOX_CHECK(png, where, "cannot create a libpng writer");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw Error(where, "cannot create a libpng info struct");
  }
  const bool ok = png_encode(png, info, &out, png_uint_32(W), png_uint_32(H),
                             C == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, rows.data());
  png_destroy_write_struct(&png, &info);
  MOX_CHECK(ok, where, std::string("libpng: ") + (out.message[0] ? out.message : "encoding failed"));
  io::write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace mox::data
