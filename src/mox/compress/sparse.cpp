// Sparse state dicts in safetensors files (see sparse.h for the format).
#include "mox/compress/sparse.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <set>

#include "mox/io/safetensors.h"

namespace mox::compress {

namespace {

const std::string kValues = ".sparse_values", kMask = ".sparse_mask", kMeta = "sparse.";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Element `p` (es bytes, little-endian IEEE) is +0 or -0: every bit but the sign is clear.
bool is_zero(const uint8_t* p, size_t es) {
  for (size_t b = 0; b + 1 < es; b++)
    if (p[b]) return false;
  return (p[es - 1] & 0x7f) == 0;
}

std::string shape_text(const Shape& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); i++) {
    if (i) t += ',';
    t += std::to_string(s[i]);
  }
  t += ']';
  return t;
}

// "[d0,d1,...]" -> shape; nullopt-like failure reported through ok.
Shape parse_shape(const std::string& text, bool& ok) {
  ok = false;
  Shape s;
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') return s;
  std::string body = text.substr(1, text.size() - 2);
  size_t i = 0;
  auto skip_ws = [&] { while (i < body.size() && body[i] == ' ') i++; };
  skip_ws();
  if (i == body.size()) {
    ok = true;
    return s;
  }
  while (true) {
    skip_ws();
    size_t start = i;
    while (i < body.size() && body[i] >= '0' && body[i] <= '9') i++;
    if (i == start || i - start > 18) return s;
    s.push_back(std::stoll(body.substr(start, i - start)));
    skip_ws();
    if (i == body.size()) break;
    if (body[i] != ',') return s;
    i++;
  }
  ok = true;
  return s;
}

}  // namespace

void save_sparse_state_dict(const nn::Module& m, const std::string& path, const io::Metadata& meta,
                            double min_sparsity) {
  const char* where = "save_sparse_state_dict";
  MOX_CHECK(min_sparsity >= 0.0 && min_sparsity <= 1.0, where,
            "min_sparsity must be in [0, 1], got " + std::to_string(min_sparsity));
  io::Metadata metadata;
  for (const auto& [k, v] : meta) {
    MOX_CHECK(k.compare(0, kMeta.size(), kMeta) != 0, where,
              "metadata key \"" + k + "\" is reserved (\"sparse.*\" records the sparse tensors' shapes)");
    metadata[k] = v;
  }
  const nn::StateDict sd = m.state_dict();
  std::set<std::string> keys;
  for (const auto& [key, t] : sd) keys.insert(key);
  io::NamedTensors out;
  for (const auto& [key, tensor] : sd) {
    const int64_t numel = tensor.numel();
    if (!is_floating(tensor.dtype()) || numel == 0) {
      out.emplace_back(key, tensor);
      continue;
    }
    const Tensor t = tensor.detach().to(kCPU).contiguous();
    const size_t es = t.element_size();
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    int64_t nzero = 0;
    for (int64_t i = 0; i < numel; i++) nzero += is_zero(p + size_t(i) * es, es);
    if (double(nzero) < min_sparsity * double(numel)) {
      out.emplace_back(key, tensor);
      continue;
    }
    MOX_CHECK(!keys.count(key + kValues) && !keys.count(key + kMask), where,
              "\"" + key + "\" cannot be stored sparse: the state dict already has a tensor named \"" + key +
                  kValues + "\" or \"" + key + kMask + "\"");
    Tensor values = empty({numel - nzero}, t.dtype());
    Tensor mask = zeros({(numel + 7) / 8}, DType::U8);
    auto* v = static_cast<uint8_t*>(values.raw_data());
    auto* bits = mask.data<uint8_t>();
    for (int64_t i = 0; i < numel; i++) {
      const uint8_t* e = p + size_t(i) * es;
      if (is_zero(e, es)) continue;
      bits[i / 8] |= uint8_t(1u << (i % 8));
      std::memcpy(v, e, es);
      v += es;
    }
    out.emplace_back(key + kValues, values);
    out.emplace_back(key + kMask, mask);
    metadata[kMeta + key] = shape_text(t.shape());
  }
  io::save_safetensors(path, out, metadata);
}

nn::StateDict read_state_dict_any(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  auto fail = [&](const std::string& key, const std::string& what) { throw Error(path, "\"" + key + "\": " + what); };

  // Sparse keys from the metadata, each with its shape.
  std::map<std::string, Shape> sparse;
  for (const auto& [k, v] : f.metadata) {
    if (k.compare(0, kMeta.size(), kMeta) != 0) continue;
    const std::string key = k.substr(kMeta.size());
    bool ok;
    Shape s = parse_shape(v, ok);
    if (!ok) fail(key, "sparse shape metadata \"" + v + "\" is not [d0,d1,...]");
    if (!f.contains(key + kValues)) fail(key, "sparse tensor without \"" + key + kValues + "\"");
    if (!f.contains(key + kMask)) fail(key, "sparse tensor without \"" + key + kMask + "\"");
    if (f.contains(key)) fail(key, "stored both dense and sparse");
    sparse[key] = s;
  }

  nn::StateDict sd;
  for (const std::string& name : f.names) {
    const bool is_values = ends_with(name, kValues), is_mask = ends_with(name, kMask);
    if (!is_values && !is_mask) {
      sd.insert(name, f.tensors.at(name));
      continue;
    }
    const std::string key = name.substr(0, name.size() - (is_values ? kValues.size() : kMask.size()));
    auto it = sparse.find(key);
    if (it == sparse.end())
      fail(key, "\"" + name + "\" has no \"" + kMeta + key + "\" shape in the metadata (half of a sparse pair)");
    if (is_mask) continue;  // the pair is expanded at its values tensor
    const Shape& shape = it->second;
    const Tensor& values = f.tensors.at(name);
    const Tensor& mask = f.tensors.at(key + kMask);
    int64_t numel = 1;
    for (int64_t d : shape) {
      if (d != 0 && numel > (int64_t(1) << 50) / d) fail(key, "shape " + shape_str(shape) + " is too large");
      numel *= d;
    }
    if (!is_floating(values.dtype()) || values.dim() != 1)
      fail(key, "sparse values must be a 1-D floating tensor, got " + values.desc());
    if (mask.dtype() != DType::U8 || mask.dim() != 1 || mask.size(0) != (numel + 7) / 8)
      fail(key, "sparse mask must be u8[" + std::to_string((numel + 7) / 8) + "] (one bit per element of " +
                    shape_str(shape) + "), got " + mask.desc());
    const Tensor m = mask.contiguous(), v = values.contiguous();
    const auto* bits = m.data<uint8_t>();
    int64_t count = 0;
    for (int64_t b = 0; b < mask.size(0); b++) count += std::popcount(unsigned(bits[b]));
    if (numel % 8 && (bits[numel / 8] >> (numel % 8)))
      fail(key, "sparse mask has bits set past the tensor's " + std::to_string(numel) + " elements");
    if (count != values.size(0))
      fail(key, "sparse mask marks " + std::to_string(count) + " nonzeros but " + std::to_string(values.size(0)) +
                    " values are stored");
    Tensor dense = zeros(shape, values.dtype());
    const size_t es = dense.element_size();
    auto* d = static_cast<uint8_t*>(dense.raw_data());
    const auto* src = static_cast<const uint8_t*>(v.raw_data());
    for (int64_t i = 0; i < numel; i++)
      if (bits[i / 8] >> (i % 8) & 1u) {
        std::memcpy(d + size_t(i) * es, src, es);
        src += es;
      }
    sd.insert(key, dense);
  }
  return sd;
}

nn::LoadResult load_state_dict_any(nn::Module& m, const std::string& path, bool strict) {
  nn::StateDict sd = read_state_dict_any(path);
  try {
    return m.load_state_dict(sd, strict);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
}

}  // namespace mox::compress
