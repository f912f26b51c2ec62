// Image files: PGM/PPM (binary and ASCII, 8 and 16 bit, comments) read from hand-written
// bytes; PNGs written by an independent encoder (Python's zlib + struct: 16-bit grey, 2-bit
// grey, grey+alpha, RGB, RGBA, 4-bit palette with transparency, Adam7-interlaced RGB) read
// back exactly; write_png's output decoded by an independent decoder (Python again,
// implementing the five PNG row filters); round trips; RGBA8 screenshots; and errors
// (truncated data, bad magic, bad header fields, corrupt chunks) by message.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "error_of.h"
#include "io/test_util.h"
#include "mox/data/datasets/image_file.h"

namespace mox::data {
namespace {

using mox::testing::read_bytes;
using mox::testing::TempDir;
using mox::testing::write_bytes;

// Runs a shell command and returns its stdout; fails the test on a non-zero exit.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ADD_FAILURE() << "cannot run: " << cmd;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "command failed: " << cmd << "\n" << out;
  return out;
}

// The independent PNG encoder and decoder: nothing but zlib and struct.
const char* kPythonPng = R"PY(
import struct, sys, zlib

def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)

def png(path, w, h, depth, ctype, rows, extra=b'', interlace=0, raw=None):
    if raw is None:
        raw = b''.join(b'\x00' + bytes(r) for r in rows)
    ihdr = struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, interlace)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + extra +
                chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))

def pack(values, bits):  # sub-byte samples, most significant bits first, rows padded
    out, acc, n = [], 0, 0
    for v in values:
        acc = (acc << bits) | v
        n += bits
        if n == 8:
            out.append(acc); acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return out

def adam7(w, h, pixel):  # the seven interlaced passes, each row with filter 0
    raw = b''
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        xs = range(x0, w, dx)
        if not xs: continue
        for y in range(y0, h, dy):
            raw += b'\x00' + bytes(sum((pixel(x, y) for x in xs), []))
    return raw

def write_all(d):
    # 16-bit grey 5x3: v = (x*9973 + y*30011) % 65536, big-endian
    png(d + '/grey16.png', 5, 3, 16, 0,
        [sum(([((x * 9973 + y * 30011) % 65536) >> 8, ((x * 9973 + y * 30011) % 65536) & 255]
              for x in range(5)), []) for y in range(3)])
    # 2-bit grey 5x2: v = (x + y) % 4
    png(d + '/grey2.png', 5, 2, 2, 0, [pack([(x + y) % 4 for x in range(5)], 2) for y in range(2)])
    # grey + alpha 8-bit 3x2: grey = x*80 + y, alpha = 255 - x
    png(d + '/greyalpha.png', 3, 2, 8, 4, [sum(([x * 80 + y, 255 - x] for x in range(3)), []) for y in range(2)])
    # RGB 8-bit 4x3: v = (x*37 + y*11 + c*101) % 256
    png(d + '/rgb8.png', 4, 3, 8, 2,
        [[(x * 37 + y * 11 + c * 101) % 256 for x in range(4) for c in range(3)] for y in range(3)])
    # RGBA 8-bit 3x2: rgb as above, alpha = (x*50 + y*7) % 256
    png(d + '/rgba8.png', 3, 2, 8, 6,
        [sum(([(x * 37 + y * 11 + c * 101) % 256 for c in range(3)] + [(x * 50 + y * 7) % 256]
              for x in range(3)), []) for y in range(2)])
    # 4-bit palette 5x2, index (x + 2y) % 3; entry 0 transparent
    plte = bytes([255, 0, 0, 0, 128, 255, 10, 20, 30])
    extra = chunk(b'PLTE', plte) + chunk(b'tRNS', bytes([0]))
    png(d + '/pal4.png', 5, 2, 4, 3, [pack([(x + 2 * y) % 3 for x in range(5)], 4) for y in range(2)], extra)
    # Adam7-interlaced RGB 8-bit 11x9, same formula as rgb8
    png(d + '/interlaced.png', 11, 9, 8, 2, None, interlace=1,
        raw=adam7(11, 9, lambda x, y: [(x * 37 + y * 11 + c * 101) % 256 for c in range(3)]))

def read(path):  # prints "w h ctype depth filters v0 v1 ..." of an 8-bit grey or RGB PNG
    d = open(path, 'rb').read()
    assert d[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
    pos, idat, ihdr = 8, b'', None
    while pos < len(d):
        n, = struct.unpack('>I', d[pos:pos + 4])
        t, body = d[pos + 4:pos + 8], d[pos + 8:pos + 8 + n]
        crc, = struct.unpack('>I', d[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(t + body) & 0xffffffff, 'crc'
        if t == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
        elif t == b'IDAT': idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0 and ctype in (0, 2)
    bpp = 1 if ctype == 0 else 3
    raw, stride, out, filters = zlib.decompress(idat), w * bpp, [], set()
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        filters.add(f)
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0: p = 0
            elif f == 1: p = a
            elif f == 2: p = b
            elif f == 3: p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + p) & 255
        out += list(line)
        prev = line
    print(w, h, ctype, depth, ''.join(map(str, sorted(filters))), *out)

if sys.argv[1] == 'write': write_all(sys.argv[2])
else: read(sys.argv[2])
)PY";

std::string python_png(const TempDir& dir, const std::string& args) {
  const std::string script = dir.file("png_tool.py");
  write_bytes(script, kPythonPng);
  return run("/usr/bin/python3 " + script + " " + args);
}

// Expects t == f32 [C, H, W] with t[c, y, x] == f(c, y, x) / scale (exactly, as float).
template <typename F>
void expect_image(const Tensor& t, int64_t C, int64_t H, int64_t W, double scale, F f) {
  ASSERT_EQ(t.dtype(), DType::F32);
  ASSERT_EQ(t.shape(), (Shape{C, H, W}));
  const std::vector<float> v = t.to_vector<float>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        ASSERT_FLOAT_EQ(v[size_t((c * H + y) * W + x)], float(double(f(c, y, x)) / scale))
            << "c=" << c << " y=" << y << " x=" << x;
}

// --- PGM / PPM -------------------------------------------------------------------------------

TEST(ImageFile, BinaryPgm8WithComments) {
  TempDir dir;
  const std::string p = dir.file("a.pgm");
  std::string bytes = "P5\n# made by hand\n3 # width\n 2\n#maxval next\n255\n";
  for (int i = 0; i < 6; ++i) bytes += char(i * 50);
  write_bytes(p, bytes);
  expect_image(read_image(p), 1, 2, 3, 255.0, [](int64_t, int64_t y, int64_t x) { return (y * 3 + x) * 50; });
}

TEST(ImageFile, AsciiPgmWithSmallMaxval) {
  TempDir dir;
  const std::string p = dir.file("a.pgm");
  write_bytes(p, "P2\n# ascii\n4 2\n15\n0 1 2 3\n# comment between rows\n15 14 13 12\n");
  const int v[8] = {0, 1, 2, 3, 15, 14, 13, 12};
  expect_image(read_image(p), 1, 2, 4, 15.0, [&](int64_t, int64_t y, int64_t x) { return v[y * 4 + x]; });
}

TEST(ImageFile, BinaryPpm16BigEndianIsPlanar) {
  TempDir dir;
  const std::string p = dir.file("a.ppm");
  // 2x2 RGB, samples v = 1000*(pixel) + 300*c + 7, maxval 65535 -> two bytes, big-endian.
  std::string bytes = "P6 2 2 65535\n";
  for (int px = 0; px < 4; ++px)
    for (int c = 0; c < 3; ++c) {
      const int v = 1000 * px + 300 * c + 7 + (px == 3 && c == 2 ? 60000 : 0);
      bytes += char(v >> 8);
      bytes += char(v & 255);
    }
  write_bytes(p, bytes);
  expect_image(read_image(p), 3, 2, 2, 65535.0, [](int64_t c, int64_t y, int64_t x) {
    const int64_t px = y * 2 + x;
    return 1000 * px + 300 * c + 7 + (px == 3 && c == 2 ? 60000 : 0);
  });
}

TEST(ImageFile, Pgm16WithMaxval1000AndAsciiPpm) {
  TempDir dir;
  const std::string p = dir.file("a.pgm");
  std::string bytes = "P5\n2 1\n1000\n";
  bytes += char(1000 >> 8);
  bytes += char(1000 & 255);
  bytes += char(0);
  bytes += char(250);
  write_bytes(p, bytes);
  expect_image(read_image(p), 1, 1, 2, 1000.0, [](int64_t, int64_t, int64_t x) { return x == 0 ? 1000 : 250; });

  const std::string q = dir.file("b.ppm");
  write_bytes(q, "P3\n2 1\n255\n255 0 10   20 30 40\n");
  const int v[2][3] = {{255, 0, 10}, {20, 30, 40}};
  expect_image(read_image(q), 3, 1, 2, 255.0, [&](int64_t c, int64_t, int64_t x) { return v[x][c]; });
}

TEST(ImageFile, PnmErrorsNameFileAndProblem) {
  TempDir dir;
  const std::string p = dir.file("bad.pgm");
  // Binary data cut short.
  write_bytes(p, "P5\n4 4\n255\n" + std::string(10, 'x'));
  expect_error([&] { read_image(p); }, {p, "truncated PGM (P5) data", "needs 16 bytes", "has 10"});
  // 16-bit data cut short: 2x2 at two bytes each needs 8.
  write_bytes(p, "P5 2 2 65535\n" + std::string(7, 'x'));
  expect_error([&] { read_image(p); }, {p, "truncated", "needs 8 bytes"});
  // Header cut short.
  write_bytes(p, "P6\n4 4\n");
  expect_error([&] { read_image(p); }, {p, "truncated PPM (P6) header", "maxval"});
  // ASCII data cut short.
  write_bytes(p, "P2 2 2 255 1 2 3");
  expect_error([&] { read_image(p); }, {p, "truncated PGM (P2) data", "after 3 of 4 samples"});
  // Out-of-range fields.
  write_bytes(p, "P5 2 2 70000\n" + std::string(8, 'x'));
  expect_error([&] { read_image(p); }, {p, "maxval 70000 is out of range"});
  write_bytes(p, "P5 2 2 0\n" + std::string(8, 'x'));
  expect_error([&] { read_image(p); }, {p, "maxval 0 is out of range"});
  write_bytes(p, "P5 0 2 255\n");
  expect_error([&] { read_image(p); }, {p, "size 0x2"});
  write_bytes(p, "P2 2 1 10 3 11");
  expect_error([&] { read_image(p); }, {p, "sample 1", "is 11, above maxval 10"});
  write_bytes(p, "P2 2 x 10 3 11");
  expect_error([&] { read_image(p); }, {p, "expected height as a decimal number", "'x'"});
  write_bytes(p, "P5 99999 99999 255\n");
  expect_error([&] { read_image(p); }, {p, "99999x99999 is too large"});
  // Bad magic: a GIF, an empty file, PBM.
  write_bytes(p, "GIF89a....");
  expect_error([&] { read_image(p); }, {p, "not a PNG, PGM or PPM image: bad magic 0x47 0x49 0x46 0x38"});
  write_bytes(p, "");
  expect_error([&] { read_image(p); }, {p, "bad magic (empty file)"});
  write_bytes(p, "P4 1 1\n\x80");
  expect_error([&] { read_image(p); }, {p, "bad magic 0x50 0x34"});
  expect_error([&] { read_image(dir.file("missing.png")); }, {dir.file("missing.png"), "cannot open"});
}

// --- PNG -------------------------------------------------------------------------------------

TEST(ImageFile, PngsWrittenByPython) {
  TempDir dir;
  python_png(dir, "write " + dir.path());
  expect_image(read_image(dir.file("grey16.png")), 1, 3, 5, 65535.0,
               [](int64_t, int64_t y, int64_t x) { return (x * 9973 + y * 30011) % 65536; });
  expect_image(read_image(dir.file("grey2.png")), 1, 2, 5, 3.0,
               [](int64_t, int64_t y, int64_t x) { return (x + y) % 4; });
  expect_image(read_image(dir.file("greyalpha.png")), 1, 2, 3, 255.0,
               [](int64_t, int64_t y, int64_t x) { return x * 80 + y; });
  expect_image(read_image(dir.file("rgb8.png")), 3, 3, 4, 255.0,
               [](int64_t c, int64_t y, int64_t x) { return (x * 37 + y * 11 + c * 101) % 256; });
  expect_image(read_image(dir.file("rgba8.png")), 3, 2, 3, 255.0,
               [](int64_t c, int64_t y, int64_t x) { return (x * 37 + y * 11 + c * 101) % 256; });
  expect_image(read_image(dir.file("interlaced.png")), 3, 9, 11, 255.0,
               [](int64_t c, int64_t y, int64_t x) { return (x * 37 + y * 11 + c * 101) % 256; });
  const int pal[3][3] = {{255, 0, 0}, {0, 128, 255}, {10, 20, 30}};
  expect_image(read_image(dir.file("pal4.png")), 3, 2, 5, 255.0,
               [&](int64_t c, int64_t y, int64_t x) { return pal[(x + 2 * y) % 3][c]; });
}

TEST(ImageFile, Rgba8ExpandsEveryLayout) {
  TempDir dir;
  python_png(dir, "write " + dir.path());
  auto px = [](const Rgba8& im, int64_t y, int64_t x, int c) { return int(im.pixels[size_t((y * im.width + x) * 4 + c)]); };
  // Palette: colours from PLTE, alpha 0 for entry 0 (tRNS), 255 for the others.
  Rgba8 pal = read_png_rgba8(dir.file("pal4.png"));
  ASSERT_EQ(pal.width, 5);
  ASSERT_EQ(pal.height, 2);
  ASSERT_EQ(pal.pixels.size(), 5u * 2u * 4u);
  const int colours[3][3] = {{255, 0, 0}, {0, 128, 255}, {10, 20, 30}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 5; ++x) {
      const int k = (x + 2 * y) % 3;
      for (int c = 0; c < 3; ++c) EXPECT_EQ(px(pal, y, x, c), colours[k][c]);
      EXPECT_EQ(px(pal, y, x, 3), k == 0 ? 0 : 255);
    }
  // 16-bit grey: grey replicated into RGB, scaled to 8 bits with rounding, opaque.
  Rgba8 g = read_png_rgba8(dir.file("grey16.png"));
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x) {
      const int v = int(std::lround(((x * 9973 + y * 30011) % 65536) / 257.0));
      for (int c = 0; c < 3; ++c) EXPECT_EQ(px(g, y, x, c), v) << y << "," << x;
      EXPECT_EQ(px(g, y, x, 3), 255);
    }
  // RGBA keeps its alpha.
  Rgba8 a = read_png_rgba8(dir.file("rgba8.png"));
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(px(a, y, x, c), (x * 37 + y * 11 + c * 101) % 256);
      EXPECT_EQ(px(a, y, x, 3), (x * 50 + y * 7) % 256);
    }
  const std::string pgm = dir.file("a.pgm");
  write_bytes(pgm, "P5 1 1 255\n\x01");
  expect_error([&] { read_png_rgba8(pgm); }, {pgm, "not a PNG file: bad signature 0x50 0x35"});
}

// A [C, H, W] image whose values are exact multiples of 1/255, varied enough that libpng
// picks several row filters.
Tensor test_image(int64_t C, int64_t H, int64_t W) {
  std::vector<float> v(size_t(C * H * W));
  uint32_t s = 12345;
  for (size_t i = 0; i < v.size(); ++i) {
    s = s * 1664525u + 1013904223u;
    const int64_t x = int64_t(i) % W, y = int64_t(i) / W % H;
    const int q = (i % 7 == 0) ? int(s >> 24) : int((x * 9 + y * 5 + int64_t(i / size_t(H * W)) * 40) % 256);
    v[i] = float(q) / 255.0f;
  }
  return from_vector(v, {C, H, W});
}

TEST(ImageFile, WritePngRoundTripsAndPythonDecodesIt) {
  TempDir dir;
  for (int64_t C : {1, 3}) {
    const std::string p = dir.file("out" + std::to_string(C) + ".png");
    const Tensor img = test_image(C, 17, 23);
    write_png(p, img);
    // Read back through libpng: exactly the same values.
    const Tensor back = read_image(p);
    ASSERT_EQ(back.shape(), (Shape{C, 17, 23}));
    const auto a = img.to_vector<float>(), b = back.to_vector<float>();
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "index " << i;
    // Decoded by the independent Python decoder: same bytes, interleaved.
    std::istringstream in(python_png(dir, "read " + p));
    int64_t w, h, ctype, depth;
    std::string filters;
    in >> w >> h >> ctype >> depth >> filters;
    std::printf("write_png C=%lld: row filters used %s\n", (long long)C, filters.c_str());
    EXPECT_GE(filters.size(), 2u) << "libpng should mix row filters on this image: " << filters;
    EXPECT_EQ(w, 23);
    EXPECT_EQ(h, 17);
    EXPECT_EQ(ctype, C == 1 ? 0 : 2);
    EXPECT_EQ(depth, 8);
    for (int64_t y = 0; y < 17; ++y)
      for (int64_t x = 0; x < 23; ++x)
        for (int64_t c = 0; c < C; ++c) {
          int v = -1;
          in >> v;
          ASSERT_EQ(v, int(std::lround(a[size_t((c * 17 + y) * 23 + x)] * 255))) << y << "," << x << "," << c;
        }
    int extra;
    EXPECT_FALSE(in >> extra) << "more samples than pixels";
  }
}

TEST(ImageFile, WritePngClampsRoundsAndIsAtomic) {
  TempDir dir;
  const std::string p = dir.file("c.png");
  // -0.5 -> 0, 1.7 -> 255, 0.5 -> 128 (round half away from zero of 127.5), 0.2 -> 51.
  write_png(p, from_vector(std::vector<double>{-0.5, 1.7, 0.5, 0.2}, {1, 2, 2}));
  expect_image(read_image(p), 1, 2, 2, 255.0, [](int64_t, int64_t y, int64_t x) {
    const int v[4] = {0, 255, 128, 51};
    return v[y * 2 + x];
  });
  // Overwriting replaces the file whole and leaves no temporary file behind.
  write_png(p, test_image(3, 4, 5));
  EXPECT_EQ(read_image(p).shape(), (Shape{3, 4, 5}));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename().string(), "c.png");
  }
  EXPECT_EQ(files, 1);
  // Bad inputs leave the old file untouched.
  const std::string before = read_bytes(p);
  expect_error([&] { write_png(p, zeros({2, 4, 4})); }, {"write_png " + p, "C = 1 or 3", "f32[2, 4, 4]"});
  expect_error([&] { write_png(p, zeros({4, 4})); }, {"write_png " + p, "[C, H, W]"});
  expect_error([&] { write_png(p, zeros({1, 4, 4}, DType::I64)); }, {"write_png " + p, "floating-point"});
  expect_error([&] { write_png(p, zeros({1, 0, 4})); }, {"write_png " + p, "size 4x0"});
  Tensor nan = zeros({3, 2, 2});
  nan.data<float>()[4 + 3] = std::nanf("");
  expect_error([&] { write_png(p, nan); }, {"write_png " + p, "channel 1 pixel (1, 1) is NaN"});
  EXPECT_EQ(read_bytes(p), before);
  const std::string nodir = dir.file("no/such/dir/x.png");
  expect_error([&] { write_png(nodir, zeros({1, 2, 2})); }, {nodir});
}

TEST(ImageFile, PngErrorsTruncatedCorruptAndBadMagic) {
  TempDir dir;
  const std::string good = dir.file("good.png");
  write_png(good, test_image(3, 20, 20));
  const std::string bytes = read_bytes(good);
  const std::string p = dir.file("bad.png");
  // Cut inside IDAT.
  write_bytes(p, bytes.substr(0, bytes.size() / 2));
  expect_error([&] { read_image(p); }, {p, "truncated PNG", "the file ends at " + std::to_string(bytes.size() / 2) + " bytes"});
  expect_error([&] { read_png_rgba8(p); }, {p, "truncated PNG"});
  // Cut inside the header: only the signature and part of IHDR.
  write_bytes(p, bytes.substr(0, 20));
  expect_error([&] { read_image(p); }, {p, "truncated PNG"});
  // A flipped byte in IHDR's CRC; a flipped byte inside IDAT's compressed data.
  std::string corrupt = bytes;
  corrupt[29] = char(corrupt[29] ^ 0x55);
  write_bytes(p, corrupt);
  expect_error([&] { read_image(p); }, {p, "IHDR: CRC error"});
  const size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  corrupt = bytes;
  corrupt[idat + 6] = char(corrupt[idat + 6] ^ 0x55);
  write_bytes(p, corrupt);
  expect_error([&] { read_image(p); }, {p, "bad PNG: IDAT"});
  // A wrong signature byte is not a PNG at all.
  std::string sig = bytes;
  sig[1] = 'X';
  write_bytes(p, sig);
  expect_error([&] { read_image(p); }, {p, "bad magic 0x89 0x58 0x4e 0x47"});
  // An IHDR with zero width.
  std::string zero = bytes;
  zero[16] = zero[17] = zero[18] = zero[19] = 0;
  write_bytes(p, zero);
  const std::string msg = error_of([&] { read_image(p); });
  EXPECT_NE(msg.find(p + ": "), std::string::npos) << msg;
  EXPECT_NE(msg.find("PNG"), std::string::npos) << msg;
}

}  // namespace
}  // namespace mox::data
