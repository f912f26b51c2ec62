#pragma once
// Single image files for `mox predict`: binary and ASCII PGM (P5/P2, 8 or 16 bit) and PPM
// (P6/P3), and PNG through libpng (grey, grey+alpha, RGB, RGBA, palette; 8 or 16 bit;
// alpha dropped). Errors name the file and what is wrong with it.
#include <string>

#include "mox/tensor/tensor.h"

namespace mox::data {

// The image as f32 [C, H, W] in [0, 1] (C = 1 for grey, 3 for colour).
Tensor read_image(const std::string& path);
// The same from the file's bytes in memory (an upload); errors name `name`.
Tensor decode_image(const std::string& name, const uint8_t* data, size_t size);

// Writes f32 [C, H, W] (C = 1 or 3) values in [0, 1] (clamped) as an 8-bit PNG, atomically.
void write_png(const std::string& path, const Tensor& image);

// Reads a PNG as 8-bit RGBA rows (for tests that inspect screenshots): width, height and
// width*height*4 bytes.
struct Rgba8 {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;
};
Rgba8 read_png_rgba8(const std::string& path);

}  // namespace mox::data
