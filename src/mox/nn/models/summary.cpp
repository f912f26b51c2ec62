#include "mox/nn/models/summary.h"

#include <algorithm>
#include <cstdio>

#include "mox/nn/models/build_model.h"

namespace mox::nn {

std::string group_thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); i++) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

namespace {

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MB", double(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

}  // namespace

ModelSummary summarize(const Module& model, const Shape& input_shape, const std::string& name) {
  ModelSummary s;
  s.name = name;
  s.input_shape = input_shape;
  std::vector<std::pair<std::string, const Module*>> layers;
  for (const auto& [child_name, child] : model.named_children().items())
    layers.emplace_back(child_name, child.get());
  if (layers.empty()) layers.emplace_back(model.type_name(), &model);

  Shape shape = input_shape;
  for (const auto& [layer_name, m] : layers) {
    SummaryRow row{layer_name, m->type_name(), m->output_shape(shape), 0};
    for (const Tensor& p : m->parameters()) row.params += p.numel();
    shape = row.output_shape;
    s.rows.push_back(row);
  }
  // (locals, not temporaries: items() returns a reference into the dict)
  OrderedDict<Tensor> params = model.named_parameters();
  StateDict state = model.state_dict();
  for (const auto& [pname, p] : params.items()) {
    int64_t bytes = p.numel() * int64_t(p.element_size());
    s.total_params += p.numel();
    s.total_bytes += bytes;
    if (p.requires_grad()) {
      s.trainable_params += p.numel();
      s.trainable_bytes += bytes;
    }
  }
  for (const auto& [bname, b] : state.items()) {
    if (params.contains(bname)) continue;
    s.buffer_elements += b.numel();
    s.buffer_bytes += b.numel() * int64_t(b.element_size());
  }
  return s;
}

std::string ModelSummary::str() const {
  size_t w1 = 29, w2 = 26, w3 = 10;
  for (const SummaryRow& r : rows) {
    w1 = std::max(w1, r.name.size() + r.type.size() + 5);
    w2 = std::max(w2, format_shape(r.output_shape).size() + 2);
    w3 = std::max(w3, std::to_string(r.params).size() + 1);
  }
  size_t width = w1 + w2 + w3;
  std::string thin(width, '_'), thick(width, '=');
  std::string out = "Model: \"" + name + "\"\n";
  out += "Input shape: " + format_shape(input_shape) + "\n";
  out += thin + "\n";
  out += pad(" Layer (type)", w1) + pad("Output Shape", w2) + "Param #\n";
  out += thick + "\n";
  for (size_t i = 0; i < rows.size(); i++) {
    const SummaryRow& r = rows[i];
    out += pad(" " + r.name + " (" + r.type + ")", w1) + pad(format_shape(r.output_shape), w2) +
           std::to_string(r.params) + "\n";
    out += (i + 1 < rows.size() ? thin : thick) + "\n";
  }
  int64_t nt = non_trainable_params();
  out += "Total params: " + group_thousands(total_params) + " (" + megabytes(total_bytes) + ")\n";
  out += "Trainable params: " + group_thousands(trainable_params) + " (" +
         megabytes(trainable_bytes) + ")\n";
  out += "Non-trainable params: " + group_thousands(nt) + " (" +
         megabytes(total_bytes - trainable_bytes) + ")\n";
  if (buffer_elements > 0)
    out += "Buffers (not trained, e.g. BatchNorm statistics): " + group_thousands(buffer_elements) +
           " (" + megabytes(buffer_bytes) + ")\n";
  out += thin + "\n";
  return out;
}

}  // namespace mox::nn
