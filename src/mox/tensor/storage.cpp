#include "mox/tensor/storage.h"

#include "mox/tensor/error.h"

namespace mox {

Storage::Storage(size_t nbytes, Device device, Allocator* alloc)
    : nbytes_(nbytes), device_(device), alloc_(alloc) {
  data_ = nbytes ? alloc->allocate(nbytes) : nullptr;
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep)
    : data_(data), nbytes_(nbytes), device_(device), keep_(std::move(keep)) {}

Storage::~Storage() {
  if (alloc_ && data_) alloc_->deallocate(data_, nbytes_);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device{DeviceType::CPU, 0};
  if (s == "cuda") return Device{DeviceType::CUDA, 0};
  if (s.rfind("cuda:", 0) == 0) {
    try {
      return Device{DeviceType::CUDA, std::stoi(s.substr(5))};
    } catch (...) {
    }
  }
  throw Error("device", "unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

}  // namespace mox
