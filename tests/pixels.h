#pragma once
// Pixel counts over screenshots, for the tests that render pages in headless Chromium
// (tests/train/test_report_browser.cpp, tests/server/dashboard_browser_test.cpp).
#include <cstdint>
#include <cstdlib>

#include "mox/data/datasets/image_file.h"

namespace mox::testing {

struct Colour {
  int r, g, b;
};

// Pixels whose every channel lies within `tol` of c.
inline int64_t count_near(const data::Rgba8& im, Colour c, int tol) {
  int64_t n = 0;
  for (size_t i = 0; i + 3 < im.pixels.size(); i += 4)
    if (std::abs(im.pixels[i] - c.r) <= tol && std::abs(im.pixels[i + 1] - c.g) <= tol &&
        std::abs(im.pixels[i + 2] - c.b) <= tol)
      ++n;
  return n;
}

}  // namespace mox::testing
