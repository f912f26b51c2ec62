#pragma once
#include <string>

namespace mox {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::CPU; }
  std::string str() const {
    return type == DeviceType::CPU ? "cpu" : "cuda:" + std::to_string(index);
  }
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"; throws mox::Error
};

inline const Device kCPU{};

}  // namespace mox
