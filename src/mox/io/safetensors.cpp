#include "mox/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace {

constexpr const char* kMetadataKey = "__metadata__";

// Only the exact upper-case spellings of the format (dtype_from_name also accepts "f32").
// BOOL (one byte, 0 or 1: the causal-mask buffers some transformers versions store) reads as
// U8, mox's mask dtype.
bool parse_dtype(const std::string& s, DType* out) {
  if (s == "BOOL") {
    *out = DType::U8;
    return true;
  }
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64, DType::I32,
                  DType::I8, DType::U8})
    if (s == safetensors_dtype_name(t)) {
      *out = t;
      return true;
    }
  return false;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Parses one tensor's header entry, checking types and that its byte size matches.
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& j) {
  std::string where = "tensor " + quote(name);
  if (!j.is_object()) throw Error(path, where + ": header entry is not a JSON object");
  Entry e;
  e.name = name;
  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) throw Error(path, where + ": missing string \"dtype\"");
  if (!parse_dtype(dt->get<std::string>(), &e.dtype))
    throw Error(path, where + ": unsupported dtype " + quote(dt->get<std::string>()) +
                          " (mox reads F32, F64, BF16, F16, I64, I32, I8, U8, BOOL)");
  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array()) throw Error(path, where + ": missing array \"shape\"");
  // Product of dims, with an overflow guard so that a corrupt shape cannot wrap around.
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned())
      throw Error(path, where + ": shape " + sh->dump() + " must hold non-negative integers");
    uint64_t v = d.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) overflow = true;
    e.shape.push_back(int64_t(v));
    if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / v) overflow = true;
    numel *= v;
  }
  auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    throw Error(path, where + ": \"data_offsets\" must be [begin, end] with non-negative integers");
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  if (e.end < e.begin)
    throw Error(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                          std::to_string(e.end) + "] end before they begin");
  uint64_t es = dtype_size(e.dtype);
  if (overflow || numel > std::numeric_limits<uint64_t>::max() / es)
    throw Error(path, where + ": shape " + sh->dump() + " is too large");
  if (numel * es != e.end - e.begin)
    throw Error(path, where + ": " + std::string(dtype_name(e.dtype)) + shape_str(e.shape) +
                          " needs " + std::to_string(numel * es) + " bytes but data_offsets [" +
                          std::to_string(e.begin) + ", " + std::to_string(e.end) + "] span " +
                          std::to_string(e.end - e.begin));
  return e;
}

// Host-contiguous copies (or the tensors themselves, when already so) for writing.
std::vector<Tensor> host_contiguous(const NamedTensors& tensors) {
  std::vector<Tensor> out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    Tensor h = t.detach();
    if (h.device() != kCPU) h = h.to(kCPU);
    out.push_back(h.contiguous());
  }
  return out;
}

}  // namespace

const Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error(path, "no tensor named " + quote(name));
  return it->second;
}

std::string safetensors_header(const NamedTensors& tensors, const Metadata& metadata) {
  // ordered_json keeps insertion order, so the header lists tensors in data order, like the
  // reference writer; dump() is compact (no spaces), also like it.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h[kMetadataKey] = std::move(m);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MOX_CHECK(t.defined(), "save_safetensors", "tensor " + quote(name) + " is undefined");
    MOX_CHECK(name != kMetadataKey, "save_safetensors",
              "a tensor may not be called \"__metadata__\"");
    MOX_CHECK(seen.insert(name).second, "save_safetensors", "duplicate tensor name " + quote(name));
    uint64_t nbytes = uint64_t(t.numel()) * t.element_size();
    nlohmann::ordered_json e;
    e["dtype"] = safetensors_dtype_name(t.dtype());
    e["shape"] = t.shape();
    e["data_offsets"] = {offset, offset + nbytes};
    h[name] = std::move(e);
    offset += nbytes;
  }
  std::string s;
  try {
    s = h.dump();
  } catch (const nlohmann::json::exception& ex) {  // e.g. a name that is not valid UTF-8
    throw Error("save_safetensors", std::string("cannot encode header: ") + ex.what());
  }
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata) {
  std::string header;
  try {
    header = safetensors_header(tensors, metadata);
  } catch (const Error& e) {
    throw Error(path, e.detail());
  }
  std::vector<Tensor> data = host_contiguous(tensors);
  AtomicFileWriter w(path);
  uint64_t n = header.size();
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = uint8_t(n >> (8 * i));
  w.write(len, 8);
  w.write(header);
  for (const Tensor& t : data)
    if (t.numel() > 0) w.write(t.raw_data(), size_t(t.numel()) * t.element_size());
  w.commit();
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const Metadata& metadata) {
  save_safetensors(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  const uint64_t size = file->size();
  if (size < 8)
    throw Error(path, "file is " + std::to_string(size) +
                          " bytes, too short for a safetensors header length (8 bytes)");
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= uint64_t(file->data()[i]) << (8 * i);
  if (n > size - 8)
    throw Error(path, "header length " + std::to_string(n) + " exceeds the file size (" +
                          std::to_string(size) + " bytes): truncated or not a safetensors file");
  const char* hbegin = reinterpret_cast<const char*>(file->data()) + 8;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hbegin, hbegin + n);
  } catch (const nlohmann::json::exception& ex) {
    throw Error(path, std::string("invalid JSON header: ") + ex.what());
  }
  if (!header.is_object()) throw Error(path, "header is not a JSON object");

  SafetensorsFile out;
  out.path = path;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it->is_object()) throw Error(path, "\"__metadata__\" is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          throw Error(path, "metadata value of " + quote(m.key()) + " is not a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), *it));
  }

  // The data section must be tiled exactly by the tensors, in offset order.
  const uint64_t data_size = size - 8 - n;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const Entry& e : entries) {
    if (e.end > data_size)
      throw Error(path, "tensor " + quote(e.name) + ": data_offsets [" + std::to_string(e.begin) +
                            ", " + std::to_string(e.end) + "] lie beyond the end of the data (" +
                            std::to_string(data_size) + " bytes): file truncated?");
    if (e.begin < expected)
      throw Error(path, "tensor " + quote(e.name) + ": data_offsets [" + std::to_string(e.begin) +
                            ", " + std::to_string(e.end) + "] overlap the previous tensor");
    if (e.begin > expected)
      throw Error(path, "tensor " + quote(e.name) + ": data_offsets begin at " +
                            std::to_string(e.begin) + ", leaving a gap after byte " +
                            std::to_string(expected));
    expected = e.end;
  }
  if (expected != data_size)
    throw Error(path, std::to_string(data_size - expected) +
                          " bytes of trailing data after the last tensor");

  const uint64_t data_start = 8 + n;
  for (const Entry& e : entries) {
    uint8_t* p = file->mutable_data() + data_start + e.begin;
    Tensor t;
    if ((data_start + e.begin) % dtype_size(e.dtype) == 0) {
      t = from_blob(p, e.shape, e.dtype, file);  // views the mapping; keeps it alive
    } else {
      // Misaligned for its element type (a writer that did not order tensors by alignment):
      // copy, since typed access to misaligned memory is undefined behaviour.
      t = empty(e.shape, e.dtype);
      if (e.end > e.begin) std::memcpy(t.raw_data(), p, e.end - e.begin);
    }
    out.tensors.emplace(e.name, std::move(t));
    out.names.push_back(e.name);
  }
  return out;
}

}  // namespace mox::io
