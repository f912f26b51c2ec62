#include "mox/compress/quantize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <typeinfo>

#include "mox/autograd/node.h"
#include "mox/io/json_field.h"
#include "mox/nn/layers/activation.h"
#include "mox/nn/layers/batch_norm.h"
#include "mox/nn/layers/conv2d.h"
#include "mox/nn/layers/dropout.h"
#include "mox/nn/layers/flatten.h"
#include "mox/nn/layers/identity.h"
#include "mox/nn/layers/max_pool2d.h"
#include "mox/nn/models/gpt.h"
#include "mox/ops/ops.h"

namespace mox::compress {

using nlohmann::json;

// ---------------------------------------------------------------- config

void QuantConfig::validate() const {
  static const std::set<std::string> modes = {"ptq-int8", "dynamic-int8", "w8", "w4", "qat"};
  MOX_CHECK(modes.count(mode) != 0, "quantize",
            "mode must be ptq-int8, dynamic-int8, w8, w4 or qat, got \"" + mode + "\"");
  MOX_CHECK(activations == "tensor" || activations == "token", "quantize",
            "activations must be tensor or token, got \"" + activations + "\"");
  MOX_CHECK(activations == "tensor" || mode == "dynamic-int8", "quantize",
            "per-token activations are dynamic: use them with --mode dynamic-int8");
  MOX_CHECK(percentile > 50 && percentile <= 100, "quantize", "percentile must be in (50, 100]");
}

json QuantConfig::to_json() const {
  json j;
  j["mode"] = mode;
  j["activations"] = activations;
  j["calibration"] = calibration_name(calibration);
  j["percentile"] = percentile;
  j["calibration_batches"] = calibration_batches;
  j["skip"] = skip;
  return j;
}

QuantConfig QuantConfig::from_json(const json& j, const std::string& where) {
  MOX_CHECK(j.is_object(), where, "quantization config: expected an object");
  QuantConfig c;
  try {
    c.mode = j.value("mode", c.mode);
    c.activations = j.value("activations", c.activations);
    c.calibration = calibration_from_name(j.value("calibration", std::string("minmax")));
    c.percentile = j.value("percentile", c.percentile);
    c.calibration_batches = j.value("calibration_batches", int64_t(0));
    c.skip = j.value("skip", std::vector<std::string>{});
  } catch (const json::exception& e) {
    throw Error(where, std::string("quantization config: ") + e.what());
  }
  c.validate();
  return c;
}

// ---------------------------------------------------------------- helpers

namespace {

Tensor scalar_f32(float v) { return from_vector<float>({v}, {1}); }
Tensor scalar_i32(int32_t v) { return from_vector<int32_t>({v}, {1}); }

const char* act_name(QActMode m) {
  switch (m) {
    case QActMode::Static: return "static";
    case QActMode::DynamicTensor: return "dynamic-tensor";
    case QActMode::DynamicToken: return "dynamic-token";
  }
  return "?";
}
QActMode act_from_name(const std::string& s, const std::string& where) {
  if (s == "static") return QActMode::Static;
  if (s == "dynamic-tensor") return QActMode::DynamicTensor;
  if (s == "dynamic-token") return QActMode::DynamicToken;
  throw Error(where, "unknown activation mode \"" + s + "\"");
}

}  // namespace

// ---------------------------------------------------------------- int8 layers

void QuantizedParams::register_into(nn::Module& m, const Shape& weight_shape, bool bias) {
  const int64_t n = weight_shape[0];
  qweight = m.register_buffer("weight", zeros(weight_shape, TensorOptions(DType::I8)));
  weight_scale = m.register_buffer("weight_scale", ones({n}));
  if (bias) qbias = m.register_buffer("bias", zeros({n}));
  input_scale = m.register_buffer("input_scale", scalar_f32(in.params.scale));
  input_zero_point = m.register_buffer("input_zero_point", scalar_i32(in.params.zero_point));
  output_scale = m.register_buffer("output_scale", scalar_f32(out.params.scale));
  output_zero_point = m.register_buffer("output_zero_point", scalar_i32(out.params.zero_point));
}

void QuantizedParams::set_weights(const Tensor& w, const Tensor& bias) {
  QWeight q = make_qweight(w.detach().to(DType::F32).contiguous(), bias.defined() ? bias.detach().to(DType::F32) : Tensor());
  qweight.copy_(q.q);
  weight_scale.copy_(q.scale);
  if (qbias.defined()) qbias.copy_(q.bias);
}

const QWeight& QuantizedParams::prepare() {
  // The parameters live in the buffers (loading a file writes there), read at every call.
  MOX_CHECK(input_scale.device().is_cpu(), "quantized layer",
            "int8 layers run on the CPU; this model was moved to " + input_scale.device().str());
  in.params.scale = input_scale.data<float>()[0];
  in.params.zero_point = input_zero_point.data<int32_t>()[0];
  out.params.scale = output_scale.data<float>()[0];
  out.params.zero_point = output_zero_point.data<int32_t>()[0];
  if (!qw_) qw_ = std::make_shared<QWeight>(make_qweight_from_int8(qweight, weight_scale, qbias));
  return *qw_;
}

json QuantizedParams::flags(const char* type) const {
  return {{"type", type}, {"act", act_name(in.mode)}, {"relu", out.relu}, {"requantize", out.requantize}, {"bias", qbias.defined()}};
}

std::string QuantizedParams::describe() const {
  return std::string(", act=") + act_name(in.mode) + (out.relu ? ", relu" : "") + (out.requantize ? ", out=u8" : "");
}

QuantizedLinear::QuantizedLinear(int64_t in_f, int64_t out_f, bool bias, QInput in_, QOutput out_)
    : nn::Linear(in_f, out_f, NoParameters{}) {
  in = in_, out = out_;
  register_into(*this, {out_f, in_f}, bias);
}

QuantizedLinear::QuantizedLinear(const nn::Linear& src, QInput in_, QOutput out_)
    : QuantizedLinear(src.in_features, src.out_features, src.bias.defined(), in_, out_) {
  MOX_CHECK(src.weight.defined(), "QuantizedLinear", "the source Linear has no float weight");
  set_weights(src.weight, src.bias);
}

Tensor QuantizedLinear::forward(const Tensor& x) {
  output_shape(x.shape());
  const QWeight& w = prepare();
  return qlinear(x, w, in, out);
}

QuantizedConv2d::QuantizedConv2d(int64_t ic, int64_t oc, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                                 std::array<int64_t, 2> p, std::array<int64_t, 2> d, bool bias, QInput in_,
                                 QOutput out_)
    : in_channels(ic), out_channels(oc), kernel(k), stride(s), padding(p), dilation(d) {
  MOX_CHECK(ic > 0 && oc > 0 && k[0] > 0 && k[1] > 0, "QuantizedConv2d", "sizes must be positive");
  in = in_, out = out_;
  register_into(*this, {oc, ic, k[0], k[1]}, bias);
}

QuantizedConv2d::QuantizedConv2d(const nn::Conv2d& src, QInput in_, QOutput out_)
    : QuantizedConv2d(src.options.in_channels(), src.options.out_channels(),
                      {src.options.kernel_size().h, src.options.kernel_size().w},
                      {src.options.stride().h, src.options.stride().w},
                      {src.options.padding().h, src.options.padding().w},
                      {src.options.dilation().h, src.options.dilation().w}, src.bias.defined(), in_, out_) {
  MOX_CHECK(src.options.groups() == 1, "QuantizedConv2d", "grouped convolutions stay in float");
  set_weights(src.weight, src.bias);
}

Shape QuantizedConv2d::output_shape(const Shape& s) const {
  MOX_CHECK(s.size() == 4, "QuantizedConv2d", "expected [N, C, H, W], got " + shape_str(s));
  MOX_CHECK(s[1] == in_channels, "QuantizedConv2d",
            "expected " + std::to_string(in_channels) + " input channels, got " + shape_str(s));
  auto o = [&](int i) {
    return (s[size_t(2 + i)] + 2 * padding[size_t(i)] - dilation[size_t(i)] * (kernel[size_t(i)] - 1) - 1) / stride[size_t(i)] + 1;
  };
  const int64_t ho = o(0), wo = o(1);
  MOX_CHECK(ho > 0 && wo > 0, "QuantizedConv2d", "input " + shape_str(s) + " is smaller than the kernel");
  return {s[0], out_channels, ho, wo};
}

Tensor QuantizedConv2d::forward(const Tensor& x) {
  output_shape(x.shape());
  const QWeight& w = prepare();
  return qconv2d(x, w, stride, padding, dilation, in, out);
}

std::string QuantizedConv2d::extra_repr() const {
  return std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", kernel_size=(" +
         std::to_string(kernel[0]) + ", " + std::to_string(kernel[1]) + ")" + describe();
}

// ---------------------------------------------------------------- BlockQuantLinear

BlockQuantLinear::BlockQuantLinear(int64_t in_f, int64_t out_f, bool bias, BlockFormat f)
    : nn::Linear(in_f, out_f, NoParameters{}), format(f) {
  MOX_CHECK(in_f % 32 == 0, "BlockQuantLinear",
            "in_features " + std::to_string(in_f) + " is not a multiple of the block size 32");
  if (f == BlockFormat::Q8)
    qweight = register_buffer("qweight", zeros({out_f, in_f}, TensorOptions(DType::I8)));
  else
    qweight = register_buffer("qweight", zeros({out_f, in_f / 2}, TensorOptions(DType::U8)));
  qscale = register_buffer("qscale", zeros({out_f, in_f / 32}, TensorOptions(DType::F16)));
  if (bias) qbias = register_buffer("bias", zeros({out_f}));
}

BlockQuantLinear::BlockQuantLinear(const nn::Linear& src, BlockFormat f)
    : BlockQuantLinear(src.in_features, src.out_features, src.bias.defined(), f) {
  MOX_CHECK(src.weight.defined(), "BlockQuantLinear", "the source Linear has no float weight");
  BlockQuantWeight w = block_quantize(src.weight.detach().to(DType::F32).contiguous(), f);
  qweight.copy_(w.data);
  qscale.copy_(w.scale);
  if (qbias.defined()) qbias.copy_(src.bias.detach().to(DType::F32));
}

Tensor BlockQuantLinear::forward(const Tensor& x) {
  output_shape(x.shape());
  MOX_CHECK(qweight.device().is_cpu(), "BlockQuantLinear",
            "block-quantised layers run on the CPU; this model was moved to " + qweight.device().str());
  if (!bw_) bw_ = std::make_shared<BlockQuantWeight>(block_weight_from(format, qweight, qscale));
  return block_linear(x.dtype() == DType::F32 ? x : x.to(DType::F32), *bw_, qbias);
}

std::string BlockQuantLinear::extra_repr() const {
  return nn::Linear::extra_repr() + ", format=" + block_format_name(format);
}

// ---------------------------------------------------------------- QAT layers

namespace {

constexpr double kEmaConstant = 0.01;

// Moving-average min/max of a batch's activations (training mode), then fake-quant to u8.
Tensor fake_quant_input(const Tensor& x, float& lo, float& hi, bool training) {
  if (training) {
    NoGradGuard ng;
    Tensor d = x.detach();
    const float bmin = std::min(0.0f, amin(d).item<float>()), bmax = std::max(0.0f, amax(d).item<float>());
    lo = float(lo + kEmaConstant * (bmin - lo));
    hi = float(hi + kEmaConstant * (bmax - hi));
  }
  QParams p = choose_qparams_u8(lo, hi);
  return fake_quantize(x, p.scale, p.zero_point, 0, 255);
}

// Per output channel (dim 0), symmetric [-127, 127], scale from the current weights.
Tensor fake_quant_weight(const Tensor& w) {
  Tensor scale;
  {
    NoGradGuard ng;
    Tensor a = abs(w.detach()).reshape({w.size(0), -1});
    scale = amax(a, {1}) / 127.0;
    scale = where(gt(scale, 0.0), scale, ones_like(scale));
  }
  return fake_quantize_per_channel(w, scale, zeros({w.size(0)}, TensorOptions(DType::I32)), 0, -127, 127);
}

}  // namespace

QATLinear::QATLinear(const nn::Linear& src, float lo_, float hi_)
    : nn::Linear(src.in_features, src.out_features, NoParameters{}), lo(lo_), hi(hi_) {
  MOX_CHECK(src.weight.defined(), "QATLinear", "the source Linear has no float weight");
  // The source's own parameter handles: an optimiser built over the float model trains these.
  weight = register_parameter("weight", src.weight);
  if (src.bias.defined()) bias = register_parameter("bias", src.bias);
}

Tensor QATLinear::forward(const Tensor& x) {
  output_shape(x.shape());
  return linear(fake_quant_input(x, lo, hi, is_training()), fake_quant_weight(weight), bias);
}

QATConv2d::QATConv2d(const nn::Conv2d& src, float lo_, float hi_) : lo(lo_), hi(hi_) {
  MOX_CHECK(src.options.groups() == 1, "QATConv2d", "grouped convolutions stay in float");
  weight = register_parameter("weight", src.weight);
  if (src.bias.defined()) bias = register_parameter("bias", src.bias);
  const auto& o = src.options;
  params.stride_h = o.stride().h;
  params.stride_w = o.stride().w;
  params.pad_h = o.padding().h;
  params.pad_w = o.padding().w;
  params.dil_h = o.dilation().h;
  params.dil_w = o.dilation().w;
}

Shape QATConv2d::output_shape(const Shape& s) const {
  MOX_CHECK(s.size() == 4 && s[1] == weight.size(1), "QATConv2d",
            "expected [N, " + std::to_string(weight.size(1)) + ", H, W], got " + shape_str(s));
  auto o = [&](int64_t n, int64_t k, int64_t st, int64_t pad, int64_t dil) { return (n + 2 * pad - dil * (k - 1) - 1) / st + 1; };
  return {s[0], weight.size(0), o(s[2], weight.size(2), params.stride_h, params.pad_h, params.dil_h),
          o(s[3], weight.size(3), params.stride_w, params.pad_w, params.dil_w)};
}

Tensor QATConv2d::forward(const Tensor& x) {
  output_shape(x.shape());
  return conv2d(fake_quant_input(x, lo, hi, is_training()), fake_quant_weight(weight), bias, params);
}

// ---------------------------------------------------------------- conversion

namespace {

bool is_passthrough(const nn::Module& m) {
  return typeid(m) == typeid(nn::Identity) || typeid(m) == typeid(nn::Flatten) || typeid(m) == typeid(nn::Dropout) ||
         typeid(m) == typeid(nn::MaxPool2d);
}

bool quantizable(const nn::Module& m) {
  if (typeid(m) == typeid(nn::Linear)) return static_cast<const nn::Linear&>(m).weight.defined();
  if (auto* c = dynamic_cast<const nn::Conv2d*>(&m)) return c->options.groups() == 1;
  return typeid(m) == typeid(QATLinear) || typeid(m) == typeid(QATConv2d);
}

// Resolves "first" / "last" against the quantisable children's names.
std::set<std::string> skip_set(const std::vector<std::string>& skip, const std::vector<std::string>& candidates) {
  std::set<std::string> out;
  for (const auto& s : skip) {
    if (s == "first" && !candidates.empty()) out.insert(candidates.front());
    else if (s == "last" && !candidates.empty()) out.insert(candidates.back());
    else out.insert(s);
  }
  return out;
}

// BatchNorm after a Conv2d / Linear folded into its weight and bias (eval statistics); the
// BatchNorm becomes an Identity.
void fold_batch_norms(nn::Sequential& model) {
  NoGradGuard ng;
  const auto items = model.named_children().items();
  for (size_t i = 0; i + 1 < items.size(); i++) {
    auto* bn = dynamic_cast<nn::BatchNormBase*>(items[i + 1].second.get());
    if (!bn || !bn->running_mean.defined()) continue;
    Tensor w, b;
    std::shared_ptr<nn::Module> repl;
    if (auto* c = dynamic_cast<nn::Conv2d*>(items[i].second.get())) {
      nn::Conv2dOptions o = c->options;
      auto conv = std::make_shared<nn::Conv2d>(o.bias(true));
      w = conv->weight, b = conv->bias;
      repl = conv;
      w.copy_(c->weight.detach());
      if (c->bias.defined()) b.copy_(c->bias.detach());
      else b.zero_();
    } else if (auto* l = dynamic_cast<nn::Linear*>(items[i].second.get()); l && typeid(*l) == typeid(nn::Linear)) {
      auto lin = std::make_shared<nn::Linear>(l->in_features, l->out_features, true);
      w = lin->weight, b = lin->bias;
      repl = lin;
      w.copy_(l->weight.detach());
      if (l->bias.defined()) b.copy_(l->bias.detach());
      else b.zero_();
    } else {
      continue;
    }
    Tensor inv = rsqrt(bn->running_var.detach().to(DType::F32) + bn->eps);
    Tensor g = bn->weight.defined() ? bn->weight.detach().to(DType::F32) * inv : inv;
    Tensor shape_g = g.reshape(w.dim() == 4 ? Shape{-1, 1, 1, 1} : Shape{-1, 1});
    w.copy_(w * shape_g);
    Tensor nb = (b - bn->running_mean.detach().to(DType::F32)) * g;
    if (bn->bias.defined()) nb = nb + bn->bias.detach().to(DType::F32);
    b.copy_(nb);
    model.replace_module(items[i].first, repl);
    model.replace_module(items[i + 1].first, std::make_shared<nn::Identity>());
  }
}

struct Target {
  size_t index;
  std::string name;
};

std::vector<Target> targets_of(nn::Sequential& model, const QuantConfig& cfg, QuantizeReport& rep) {
  const auto& items = model.named_children().items();
  std::vector<std::string> names;
  for (const auto& [n, m] : items)
    if (quantizable(*m)) names.push_back(n);
  std::set<std::string> skip = skip_set(cfg.skip, names);
  std::vector<Target> out;
  for (size_t i = 0; i < items.size(); i++) {
    if (!quantizable(*items[i].second)) continue;
    if (skip.count(items[i].first)) {
      rep.kept_float.push_back(items[i].first);
      continue;
    }
    out.push_back({i, items[i].first});
  }
  return out;
}

// Runs the batches child by child, handing each target's input to fn.
void run_observing(nn::Sequential& model, const std::vector<Tensor>& batches, const std::vector<Target>& targets,
                   const std::function<void(size_t, const Tensor&)>& fn) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  std::map<size_t, size_t> at;
  for (size_t t = 0; t < targets.size(); t++) at[targets[t].index] = t;
  const auto& items = model.named_children().items();
  for (const Tensor& batch : batches) {
    Tensor y = batch;
    for (size_t i = 0; i < items.size(); i++) {
      if (auto it = at.find(i); it != at.end()) fn(it->second, y);
      y = items[i].second->forward(y);
    }
  }
  if (was_training) model.train();
}

std::vector<std::pair<float, float>> calibrate(nn::Sequential& model, const std::vector<Tensor>& calibration,
                                               const std::vector<Target>& targets, const QuantConfig& cfg) {
  MOX_CHECK(!calibration.empty(), "quantize", "static quantisation needs calibration batches (--calib N >= 1)");
  std::vector<Observer> obs(targets.size(), Observer(cfg.calibration, cfg.percentile));
  run_observing(model, calibration, targets, [&](size_t t, const Tensor& x) { obs[t].observe(x, targets[t].name); });
  if (cfg.calibration != Calibration::MinMax)
    run_observing(model, calibration, targets, [&](size_t t, const Tensor& x) { obs[t].observe_histogram(x); });
  std::vector<std::pair<float, float>> ranges;
  for (const auto& o : obs) ranges.push_back(o.range());
  return ranges;
}

// Swaps each target for its int8 layer, fusing a directly following ReLU and requantising to
// the next target's input parameters when only pass-through layers stand between them.
void convert_targets(nn::Sequential& model, const std::vector<Target>& targets,
                     const std::vector<std::pair<float, float>>& ranges, QuantizeReport& rep) {
  std::vector<QParams> inp;
  for (const auto& [lo, hi] : ranges) inp.push_back(choose_qparams_u8(lo, hi));
  const auto items = model.named_children().items();  // a copy: replace_module edits the dict
  std::map<size_t, size_t> at;
  for (size_t t = 0; t < targets.size(); t++) at[targets[t].index] = t;
  for (size_t t = 0; t < targets.size(); t++) {
    const size_t i = targets[t].index;
    QInput in{QActMode::Static, inp[t]};
    QOutput out;
    size_t k = i + 1;
    while (k < items.size() && typeid(*items[k].second) == typeid(nn::Identity)) k++;  // a folded BatchNorm
    if (k < items.size() && typeid(*items[k].second) == typeid(nn::ReLU)) {
      out.relu = true;
      model.replace_module(items[k].first, std::make_shared<nn::Identity>());
      k++;
    }
    while (k < items.size() && is_passthrough(*items[k].second)) k++;
    if (k < items.size() && at.count(k)) {
      out.requantize = true;
      out.params = inp[at[k]];
    }
    nn::Module& m = *items[i].second;
    std::shared_ptr<nn::Module> q;
    if (auto* l = dynamic_cast<nn::Linear*>(&m)) q = std::make_shared<QuantizedLinear>(*l, in, out);
    else if (auto* c = dynamic_cast<nn::Conv2d*>(&m)) q = std::make_shared<QuantizedConv2d>(*c, in, out);
    else {
      auto& qc = dynamic_cast<QATConv2d&>(m);
      auto conv = std::make_shared<nn::Conv2d>(nn::Conv2dOptions(qc.weight.size(1), qc.weight.size(0),
                                                                 nn::Size2(qc.weight.size(2), qc.weight.size(3)))
                                                   .stride(nn::Size2(qc.params.stride_h, qc.params.stride_w))
                                                   .padding(nn::Size2(qc.params.pad_h, qc.params.pad_w))
                                                   .dilation(nn::Size2(qc.params.dil_h, qc.params.dil_w))
                                                   .bias(qc.bias.defined()));
      {
        NoGradGuard ng;
        conv->weight.copy_(qc.weight.detach());
        if (qc.bias.defined()) conv->bias.copy_(qc.bias.detach());
      }
      q = std::make_shared<QuantizedConv2d>(*conv, in, out);
    }
    model.replace_module(targets[t].name, q);
    rep.quantized.push_back(targets[t].name);
  }
}

}  // namespace

QuantizeReport quantize_static(nn::Sequential& model, const std::vector<Tensor>& calibration, const QuantConfig& config) {
  config.validate();
  QuantizeReport rep;
  fold_batch_norms(model);
  std::vector<Target> targets = targets_of(model, config, rep);
  MOX_CHECK(!targets.empty(), "quantize", "the model has no Linear or Conv2d layer to quantise");
  std::vector<std::pair<float, float>> ranges = calibrate(model, calibration, targets, config);
  convert_targets(model, targets, ranges, rep);
  model.eval();
  return rep;
}

QuantizeReport prepare_qat(nn::Sequential& model, const std::vector<Tensor>& calibration, const QuantConfig& config) {
  config.validate();
  QuantizeReport rep;
  // No BatchNorm folding here: the layers keep the optimiser's parameter handles. A layer
  // followed by BatchNorm stays in float.
  std::vector<Target> targets;
  {
    const auto& items = model.named_children().items();
    for (const Target& t : targets_of(model, config, rep)) {
      if (t.index + 1 < items.size() && dynamic_cast<nn::BatchNormBase*>(items[t.index + 1].second.get()))
        rep.kept_float.push_back(t.name);
      else
        targets.push_back(t);
    }
  }
  MOX_CHECK(!targets.empty(), "quantize", "the model has no Linear or Conv2d layer to quantise");
  QuantConfig mm = config;
  mm.calibration = Calibration::MinMax;  // the moving average starts from the observed range
  std::vector<std::pair<float, float>> ranges = calibrate(model, calibration, targets, mm);
  const auto items = model.named_children().items();
  for (size_t t = 0; t < targets.size(); t++) {
    nn::Module& m = *items[targets[t].index].second;
    std::shared_ptr<nn::Module> q;
    if (auto* l = dynamic_cast<nn::Linear*>(&m)) q = std::make_shared<QATLinear>(*l, ranges[t].first, ranges[t].second);
    else q = std::make_shared<QATConv2d>(dynamic_cast<nn::Conv2d&>(m), ranges[t].first, ranges[t].second);
    model.replace_module(targets[t].name, q);
    rep.quantized.push_back(targets[t].name);
  }
  return rep;
}

QuantizeReport convert_qat(nn::Sequential& model, const QuantConfig& config) {
  QuantizeReport rep;
  std::vector<Target> targets;
  std::vector<std::pair<float, float>> ranges;
  const auto& items = model.named_children().items();
  for (size_t i = 0; i < items.size(); i++) {
    if (auto* l = dynamic_cast<QATLinear*>(items[i].second.get())) {
      targets.push_back({i, items[i].first});
      ranges.emplace_back(l->lo, l->hi);
    } else if (auto* c = dynamic_cast<QATConv2d*>(items[i].second.get())) {
      targets.push_back({i, items[i].first});
      ranges.emplace_back(c->lo, c->hi);
    } else if (quantizable(*items[i].second)) {
      rep.kept_float.push_back(items[i].first);
    }
  }
  MOX_CHECK(!targets.empty(), "quantize", "the model has no fake-quant layers (prepare_qat first)");
  (void)config;
  convert_targets(model, targets, ranges, rep);
  model.eval();
  return rep;
}

namespace {

// The Linear slots of a GPT, by module name, and the rebinding of its typed members after
// the registry changed.
std::vector<std::string> gpt_linear_names(nn::GPT& g) {
  std::vector<std::string> out;
  for (size_t l = 0; l < g.blocks.size(); l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    for (const char* s : {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}) out.push_back(p + s);
  }
  out.push_back("lm_head");  // with tied embeddings: a quantised copy of the embedding (ensure_head)
  return out;
}

// With tied embeddings the GPT has no lm_head: its product is x wte^T. A quantised model gets
// its own head, a Linear holding a copy of the embedding (then quantised like the others; the
// embedding lookup keeps the float table).
void ensure_head(nn::GPT& g) {
  if (g.named_children().find("lm_head")) return;
  auto head = std::make_shared<nn::Linear>(g.config().n_embd, g.config().vocab_size, false);
  {
    NoGradGuard ng;
    head->weight.copy_(g.wte->weight.detach());
  }
  g.lm_head = g.register_module("lm_head", head);
}

std::shared_ptr<nn::Linear> child_linear(nn::Module& parent, const std::string& name) {
  auto p = std::dynamic_pointer_cast<nn::Linear>(parent.named_children().at(name));
  MOX_CHECK(p != nullptr, "quantize", "child " + name + " is not a Linear");
  return p;
}

void rebind_gpt(nn::GPT& g) {
  for (auto& b : g.blocks) {
    b->attn->c_attn = child_linear(*b->attn, "c_attn");
    b->attn->c_proj = child_linear(*b->attn, "c_proj");
    b->mlp->c_fc = child_linear(*b->mlp, "c_fc");
    b->mlp->c_proj = child_linear(*b->mlp, "c_proj");
  }
  if (g.named_children().find("lm_head")) g.lm_head = child_linear(g, "lm_head");
}

// The parent of a dotted module name and the last part.
std::pair<nn::Module*, std::string> parent_of(nn::Module& root, const std::string& name, const std::string& where) {
  nn::Module* cur = &root;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) break;
    const std::string part = name.substr(start, dot - start);
    const auto* c = cur->named_children().find(part);
    MOX_CHECK(c != nullptr, where, "the model has no module \"" + name + "\"");
    cur = c->get();
    start = dot + 1;
  }
  const std::string last = name.substr(start);
  MOX_CHECK(cur->named_children().find(last) != nullptr, where, "the model has no module \"" + name + "\"");
  return {cur, last};
}

std::shared_ptr<nn::Module> module_at(nn::Module& root, const std::string& name, const std::string& where) {
  auto [parent, last] = parent_of(root, name, where);
  return parent->named_children().at(last);
}

void set_module(nn::Module& root, const std::string& name, std::shared_ptr<nn::Module> m, const std::string& where) {
  auto [parent, last] = parent_of(root, name, where);
  parent->replace_module(last, std::move(m));
}

// The Linear layers a dynamic / block mode converts: every Linear of a Sequential, the GPT's
// block Linears (and an untied lm_head).
std::vector<std::string> linear_names(nn::Module& model) {
  if (auto* g = dynamic_cast<nn::GPT*>(&model)) return gpt_linear_names(*g);
  auto* seq = dynamic_cast<nn::Sequential*>(&model);
  MOX_CHECK(seq != nullptr, "quantize", "a " + model.type_name() + " model cannot be quantised (Sequential and GPT can)");
  std::vector<std::string> out;
  for (const auto& [n, m] : seq->named_children())
    if (typeid(*m) == typeid(nn::Linear)) out.push_back(n);
  return out;
}

template <typename Make>
QuantizeReport convert_linears(nn::Module& model, const QuantConfig& config, Make make) {
  config.validate();
  QuantizeReport rep;
  std::vector<std::string> names = linear_names(model);
  std::set<std::string> skip = skip_set(config.skip, names);
  auto* seq = dynamic_cast<nn::Sequential*>(&model);
  if (auto* g = dynamic_cast<nn::GPT*>(&model); g && !g->lm_head) {
    if (skip.count("lm_head")) {
      rep.kept_float.push_back("lm_head");
      names.pop_back();
    } else {
      ensure_head(*g);
    }
  }
  for (const auto& name : names) {
    auto lin = std::dynamic_pointer_cast<nn::Linear>(module_at(model, name, "quantize"));
    if (skip.count(name) || !lin || !lin->weight.defined()) {
      rep.kept_float.push_back(name);
      continue;
    }
    // A ReLU right after a Sequential's Linear rides in the int8 epilogue.
    bool relu = false;
    if (seq) {
      const auto& items = seq->named_children().items();
      for (size_t i = 0; i + 1 < items.size(); i++)
        if (items[i].first == name && typeid(*items[i + 1].second) == typeid(nn::ReLU)) relu = true;
    }
    std::shared_ptr<nn::Module> q = make(*lin, relu);
    if (!q) {
      rep.kept_float.push_back(name);
      continue;
    }
    if (relu && dynamic_cast<QuantizedLinear*>(q.get())) {
      const auto& items = seq->named_children().items();
      for (size_t i = 0; i + 1 < items.size(); i++)
        if (items[i].first == name) {
          seq->replace_module(items[i + 1].first, std::make_shared<nn::Identity>());
          break;
        }
    }
    set_module(model, name, q, "quantize");
    rep.quantized.push_back(name);
  }
  if (auto* g = dynamic_cast<nn::GPT*>(&model)) rebind_gpt(*g);
  model.eval();
  return rep;
}

}  // namespace

QuantizeReport quantize_dynamic(nn::Module& model, const QuantConfig& config) {
  MOX_CHECK(config.mode == "dynamic-int8", "quantize", "quantize_dynamic needs mode dynamic-int8");
  QInput in{config.activations == "token" ? QActMode::DynamicToken : QActMode::DynamicTensor, {}};
  return convert_linears(model, config, [&](const nn::Linear& l, bool relu) -> std::shared_ptr<nn::Module> {
    QOutput out;
    out.relu = relu;
    return std::make_shared<QuantizedLinear>(l, in, out);
  });
}

QuantizeReport quantize_blocks(nn::Module& model, const QuantConfig& config) {
  MOX_CHECK(config.mode == "w8" || config.mode == "w4", "quantize", "quantize_blocks needs mode w8 or w4");
  const BlockFormat f = config.mode == "w8" ? BlockFormat::Q8 : BlockFormat::Q4;
  QuantConfig c = config;
  if (auto* g = dynamic_cast<nn::GPT*>(&model); g && !g->lm_head && g->config().n_embd % 32 != 0)
    c.skip.push_back("lm_head");  // a tied head that cannot be cut into blocks stays the embedding's
  return convert_linears(model, c, [&](const nn::Linear& l, bool) -> std::shared_ptr<nn::Module> {
    if (l.in_features % 32 != 0) return nullptr;  // not a whole number of blocks: stays float
    return std::make_shared<BlockQuantLinear>(l, f);
  });
}

// ---------------------------------------------------------------- on disk

json quantization_json(nn::Module& model, const QuantConfig& config) {
  json layers = json::object();
  for (auto& [name, m] : model.named_modules()) {
    if (auto* q = dynamic_cast<QuantizedLinear*>(m)) layers[name] = q->flags();
    else if (auto* c = dynamic_cast<QuantizedConv2d*>(m)) layers[name] = c->flags();
    else if (auto* b = dynamic_cast<BlockQuantLinear*>(m))
      layers[name] = {{"type", "BlockQuantLinear"}, {"format", block_format_name(b->format)}, {"bias", b->qbias.defined()}};
    else if (typeid(*m) == typeid(nn::Identity) && !name.empty())
      layers[name] = {{"type", "Identity"}};
  }
  return {{"format", "mox-quantization"}, {"version", 1}, {"config", config.to_json()}, {"layers", layers}};
}

void apply_quantization_layout(nn::Module& model, const json& layout, const std::string& where) {
  MOX_CHECK(layout.is_object() && layout.value("format", "") == "mox-quantization", where,
            "not a mox quantization.json (format)");
  MOX_CHECK(layout.value("version", 0) == 1, where, "unsupported quantization.json version");
  MOX_CHECK(layout.contains("layers") && layout["layers"].is_object(), where, "layers: expected an object");
  for (const auto& [name, e] : layout["layers"].items()) {
    const std::string w = where + ": layers." + name;
    MOX_CHECK(e.is_object() && e.contains("type") && e["type"].is_string(), w, "expected {\"type\": ...}");
    const std::string type = e["type"];
    if (auto* g = dynamic_cast<nn::GPT*>(&model); g && name == "lm_head") ensure_head(*g);
    std::shared_ptr<nn::Module> cur = module_at(model, name, where);
    std::shared_ptr<nn::Module> q;
    try {
      if (type == "Identity") {
        q = std::make_shared<nn::Identity>();
      } else if (type == "BlockQuantLinear") {
        auto* l = dynamic_cast<nn::Linear*>(cur.get());
        MOX_CHECK(l != nullptr, w, "the model's " + name + " is a " + cur->type_name() + ", not a Linear");
        q = std::make_shared<BlockQuantLinear>(l->in_features, l->out_features, e.at("bias").get<bool>(),
                                               block_format_from_name(e.at("format").get<std::string>()));
      } else if (type == "QuantizedLinear" || type == "QuantizedConv2d") {
        QInput in{act_from_name(e.at("act").get<std::string>(), w), {}};
        QOutput out;
        out.relu = e.at("relu").get<bool>();
        out.requantize = e.at("requantize").get<bool>();
        const bool bias = e.at("bias").get<bool>();
        if (type == "QuantizedLinear") {
          auto* l = dynamic_cast<nn::Linear*>(cur.get());
          MOX_CHECK(l != nullptr, w, "the model's " + name + " is a " + cur->type_name() + ", not a Linear");
          q = std::make_shared<QuantizedLinear>(l->in_features, l->out_features, bias, in, out);
        } else {
          auto* c = dynamic_cast<nn::Conv2d*>(cur.get());
          MOX_CHECK(c != nullptr, w, "the model's " + name + " is a " + cur->type_name() + ", not a Conv2d");
          const auto& o = c->options;
          q = std::make_shared<QuantizedConv2d>(o.in_channels(), o.out_channels(),
                                                std::array<int64_t, 2>{o.kernel_size().h, o.kernel_size().w},
                                                std::array<int64_t, 2>{o.stride().h, o.stride().w},
                                                std::array<int64_t, 2>{o.padding().h, o.padding().w},
                                                std::array<int64_t, 2>{o.dilation().h, o.dilation().w}, bias, in, out);
        }
      } else {
        throw Error(w, "unknown layer type \"" + type + "\"");
      }
    } catch (const json::exception& ex) {
      throw Error(w, ex.what());
    }
    set_module(model, name, q, where);
  }
  if (auto* g = dynamic_cast<nn::GPT*>(&model)) rebind_gpt(*g);
  model.eval();
}

int64_t model_bytes(const nn::Module& model) {
  int64_t total = 0;
  for (const auto& [name, t] : model.state_dict()) total += t.numel() * int64_t(dtype_size(t.dtype()));
  return total;
}

}  // namespace mox::compress
