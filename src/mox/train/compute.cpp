#include "mox/train/compute.h"

#include "mox/backend/backend.h"
#include "mox/tensor/error.h"

namespace mox::train {

DType parse_precision(const std::string& s, const std::string& where) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  throw Error(where, "precision must be f32, bf16 or f16, got '" + s + "'");
}

namespace {
void check_device(Device d) { backend_for(d); }  // throws a one-line mox::Error naming why
}  // namespace

Compute parse_compute(const io::ConfigTable& t) {
  Compute c;
  const std::string dev = t.get_string("device", "cpu");
  try {
    c.device = Device::parse(dev);
  } catch (const Error& e) {
    throw t.error("device", e.detail());
  }
  c.precision = [&] {
    try {
      return parse_precision(t.get_string("precision", "f32"), "precision");
    } catch (const Error& e) {
      throw t.error("precision", e.detail());
    }
  }();
  return c;
}

void override_compute(Compute& c, const std::string& device, const std::string& precision) {
  if (!device.empty()) c.device = Device::parse(device);
  if (!precision.empty()) c.precision = parse_precision(precision, "--precision");
  check_device(c.device);
}

}  // namespace mox::train
