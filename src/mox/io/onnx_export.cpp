#include "mox/io/onnx_export.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>
#include <set>

#include "mox/io/file_util.h"
#include "mox/nn/layers/activation.h"
#include "mox/nn/layers/avg_pool2d.h"
#include "mox/nn/layers/batch_norm.h"
#include "mox/nn/layers/conv2d.h"
#include "mox/nn/layers/embedding.h"
#include "mox/nn/layers/flatten.h"
#include "mox/nn/layers/layer_norm.h"
#include "mox/nn/layers/linear.h"
#include "mox/nn/layers/max_pool2d.h"
#include "mox/tensor/error.h"

namespace mox::io {

namespace {

using Attrs = std::vector<onnx::AttributeProto>;

onnx::AttributeProto attr_i(const std::string& name, int64_t v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(v);
  return a;
}

onnx::AttributeProto attr_f(const std::string& name, double v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(float(v));
  return a;
}

onnx::AttributeProto attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a.add_ints(x);
  return a;
}

// Names, nodes and initializers of one graph. Values are named after the layer that makes
// them ("3/Gemm", "transformer.h.0.attn/Softmax"), so a graph viewer shows the model's
// structure; weights keep the model's parameter names; constants are shared by value.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : g_(graph) {}

  // Adds a node `op` under `scope`; returns its n_outputs output names.
  std::vector<std::string> add(const std::string& op, const std::string& scope,
                               const std::vector<std::string>& inputs, const Attrs& attrs = {},
                               int n_outputs = 1) {
    onnx::NodeProto* n = g_.add_node();
    const std::string name = fresh(scope + "/" + op);
    n->set_name(name);
    n->set_op_type(op);
    for (const std::string& in : inputs) n->add_input(in);
    std::vector<std::string> outs;
    for (int i = 0; i < n_outputs; i++) {
      outs.push_back(n_outputs == 1 ? name : fresh(name + ":" + std::to_string(i)));
      n->add_output(outs.back());
    }
    for (const onnx::AttributeProto& a : attrs) *n->add_attribute() = a;
    if (std::find(op_types_.begin(), op_types_.end(), op) == op_types_.end()) op_types_.push_back(op);
    return outs;
  }
  std::string add1(const std::string& op, const std::string& scope, const std::vector<std::string>& inputs,
                   const Attrs& attrs = {}) {
    return add(op, scope, inputs, attrs)[0];
  }

  // A weight of the model under its parameter name, as float32 (once, however often it is
  // used); buffers (BatchNorm's running statistics) are not counted as parameters.
  std::string buffer(const std::string& name, const Tensor& t) { return weight(name, t, false); }
  std::string weight(const std::string& name, const Tensor& t, bool parameter = true) {
    if (!names_.insert(name).second) return name;
    MOX_CHECK(t.defined(), name, "has no data to export");
    std::vector<float> v = t.to_vector<float>();
    onnx::TensorProto* p = new_initializer(name, onnx::TensorProto::FLOAT, t.shape());
    p->set_raw_data(v.data(), v.size() * sizeof(float));
    if (parameter) parameters_ += int64_t(v.size());
    return name;
  }

  // float32 constants that are not parameters (a LayerNorm without affine weights, ...).
  std::string floats(const std::string& name, const std::vector<float>& v, const Shape& shape) {
    onnx::TensorProto* p = new_initializer(fresh(name), onnx::TensorProto::FLOAT, shape);
    p->set_raw_data(v.data(), v.size() * sizeof(float));
    return p->name();
  }

  // A float32 scalar constant, shared by value.
  std::string scalar(float v) {
    auto it = scalars_.find(v);
    if (it != scalars_.end()) return it->second;
    std::string name = floats("const_" + number_name(v), {v}, {});
    scalars_[v] = name;
    return name;
  }

  // A 1-D int64 constant (shapes, axes, slice bounds), shared by value.
  std::string ints(const std::vector<int64_t>& v) {
    auto it = ints_.find(v);
    if (it != ints_.end()) return it->second;
    std::string label;
    for (int64_t x : v) {
      if (!label.empty()) label += '_';
      label += std::to_string(x);
    }
    onnx::TensorProto* p = new_initializer(fresh("const_i64_" + label), onnx::TensorProto::INT64,
                                           {int64_t(v.size())});
    p->set_raw_data(v.data(), v.size() * sizeof(int64_t));
    return ints_[v] = p->name();
  }

  // A bool constant (stored one byte per element, as ONNX's raw_data wants it).
  std::string bools(const std::string& name, const std::vector<uint8_t>& v, const Shape& shape) {
    onnx::TensorProto* p = new_initializer(fresh(name), onnx::TensorProto::BOOL, shape);
    p->set_raw_data(v.data(), v.size());
    return p->name();
  }

  // Declares a graph input or output with a shape whose -1 dims are named by dim_names
  // (dim index -> name), or left unknown when unnamed.
  static void declare(onnx::ValueInfoProto* vi, const std::string& name, int32_t elem_type, const Shape& shape,
                      const std::map<size_t, std::string>& dim_names) {
    vi->set_name(name);
    onnx::TypeProto_Tensor* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem_type);
    onnx::TensorShapeProto* s = tt->mutable_shape();
    for (size_t i = 0; i < shape.size(); i++) {
      onnx::TensorShapeProto_Dimension* d = s->add_dim();
      if (shape[i] >= 0) {
        d->set_dim_value(shape[i]);
      } else if (auto it = dim_names.find(i); it != dim_names.end()) {
        d->set_dim_param(it->second);
      }
    }
  }

  // Makes `value` (the last node's output, or the graph input) the graph output `name`.
  void name_output(const std::string& value, const std::string& name) {
    bool produced = false;
    for (onnx::NodeProto& n : *g_.mutable_node()) {
      for (std::string& in : *n.mutable_input())
        if (in == value) in = name;
      for (std::string& out : *n.mutable_output())
        if (out == value) out = name, produced = true;
    }
    if (!produced) {  // a model that changes nothing (only Dropout / Identity layers)
      onnx::NodeProto* n = g_.add_node();
      n->set_name("Identity");
      n->set_op_type("Identity");
      n->add_input(value);
      n->add_output(name);
      op_types_.push_back("Identity");
    }
  }

  int64_t parameters() const { return parameters_; }
  const std::vector<std::string>& op_types() const { return op_types_; }

 private:
  // `name` is already reserved (fresh() or weight()).
  onnx::TensorProto* new_initializer(const std::string& name, int32_t type, const Shape& shape) {
    onnx::TensorProto* p = g_.add_initializer();
    p->set_name(name);
    p->set_data_type(type);
    for (int64_t d : shape) p->add_dims(d);
    return p;
  }

  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int i = 1; names_.count(name); i++) name = base + "_" + std::to_string(i);
    names_.insert(name);
    return name;
  }

  static std::string number_name(float v) {
    std::string s = std::to_string(v);
    if (std::isinf(v)) return v < 0 ? "neg_inf" : "inf";
    for (char& c : s)
      if (c == '-') c = 'm';
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    return s;
  }

  onnx::GraphProto& g_;
  std::set<std::string> names_;
  std::map<float, std::string> scalars_;
  std::map<std::vector<int64_t>, std::string> ints_;
  std::vector<std::string> op_types_;
  int64_t parameters_ = 0;
};

const std::string kQuantisedMessage = "ONNX export of quantised models is not supported; export the float run";

// ---------------------------------------------------------------------------------------------
// Layers -> nodes. Each takes the layer, the scope its parameters live under ("3",
// "transformer.h.0.mlp.c_fc"), the input value and its shape, and returns the output value.

std::string emit_linear(GraphBuilder& b, const nn::Linear& l, const std::string& scope, const std::string& x,
                        size_t rank) {
  MOX_CHECK(l.weight.defined(), scope + " (" + l.type_name() + ")", kQuantisedMessage);
  const std::string w = b.weight(scope + ".weight", l.weight);
  const bool has_bias = l.bias.defined();
  if (rank == 2) {  // [N, in] x [out, in]^T + [out]: one Gemm
    std::vector<std::string> in = {x, w};
    if (has_bias) in.push_back(b.weight(scope + ".bias", l.bias));
    return b.add1("Gemm", scope, in, {attr_i("transB", 1)});
  }
  const std::string wt = b.add1("Transpose", scope, {w}, {attr_ints("perm", {1, 0})});
  std::string y = b.add1("MatMul", scope, {x, wt});
  if (has_bias) y = b.add1("Add", scope, {y, b.weight(scope + ".bias", l.bias)});
  return y;
}

std::string emit_conv2d(GraphBuilder& b, const nn::Conv2d& c, const std::string& scope, const std::string& x) {
  const nn::Conv2dOptions& o = c.options;
  std::vector<std::string> in = {x, b.weight(scope + ".weight", c.weight)};
  if (c.bias.defined()) in.push_back(b.weight(scope + ".bias", c.bias));
  return b.add1("Conv", scope, in,
                {attr_ints("kernel_shape", {o.kernel_size().h, o.kernel_size().w}),
                 attr_ints("strides", {o.stride().h, o.stride().w}),
                 attr_ints("pads", {o.padding().h, o.padding().w, o.padding().h, o.padding().w}),
                 attr_ints("dilations", {o.dilation().h, o.dilation().w}), attr_i("group", o.groups())});
}

// ONNX sizes a ceil_mode window grid as ceil((n + 2p - k) / s) + 1; PyTorch (and mox) drop a
// last window that would start in the right padding. Refuse the rare shapes where they differ.
void check_pool_shape(const Pool2dParams& p, const Shape& in, const Shape& out, const std::string& where) {
  if (!p.ceil_mode) return;
  const size_t h = in.size() - 2;
  auto onnx_out = [](int64_t n, int64_t k, int64_t s, int64_t pad) {
    return n < 0 ? -1 : (n + 2 * pad - k + s - 1) / s + 1;
  };
  MOX_CHECK(onnx_out(in[h], p.kh, p.stride_h, p.pad_h) == out[h] &&
                onnx_out(in[h + 1], p.kw, p.stride_w, p.pad_w) == out[h + 1],
            where, "ceil_mode pooling of input " + shape_str(in) + " has no ONNX equivalent (its last window starts in the padding)");
}

Attrs pool_attrs(const Pool2dParams& p) {
  return {attr_ints("kernel_shape", {p.kh, p.kw}), attr_ints("strides", {p.stride_h, p.stride_w}),
          attr_ints("pads", {p.pad_h, p.pad_w, p.pad_h, p.pad_w}), attr_i("ceil_mode", p.ceil_mode ? 1 : 0)};
}

std::string emit_max_pool(GraphBuilder& b, const nn::MaxPool2d& m, const std::string& scope, const std::string& x,
                          const Shape& in, const Shape& out) {
  check_pool_shape(m.params, in, out, scope + " (MaxPool2d)");
  return b.add1("MaxPool", scope, {x}, pool_attrs(m.params));
}

std::string emit_avg_pool(GraphBuilder& b, const nn::AvgPool2d& m, const std::string& scope, const std::string& x,
                          const Shape& in, const Shape& out) {
  check_pool_shape(m.params, in, out, scope + " (AvgPool2d)");
  Attrs a = pool_attrs(m.params);
  a.push_back(attr_i("count_include_pad", m.params.count_include_pad ? 1 : 0));
  return b.add1("AveragePool", scope, {x}, a);
}

// Flatten(1, -1) is ONNX's Flatten; other ranges become a Reshape that keeps the leading
// dims (0 = copy), merges the range (-1) and spells out the trailing ones.
std::string emit_flatten(GraphBuilder& b, const nn::Flatten& f, const std::string& scope, const std::string& x,
                         const Shape& in) {
  const int64_t r = int64_t(in.size());
  const int64_t s = f.start_dim < 0 ? f.start_dim + r : f.start_dim, e = f.end_dim < 0 ? f.end_dim + r : f.end_dim;
  if (s == e) return x;
  if (s == 1 && e == r - 1) return b.add1("Flatten", scope, {x}, {attr_i("axis", 1)});
  std::vector<int64_t> shape(size_t(s), 0);
  shape.push_back(-1);
  for (int64_t i = e + 1; i < r; i++) {
    MOX_CHECK(in[i] >= 0, scope + " (Flatten)", "needs the sizes of the dims after end_dim, input " + shape_str(in));
    shape.push_back(in[i]);
  }
  return b.add1("Reshape", scope, {x, b.ints(shape)});
}

std::string emit_batch_norm(GraphBuilder& b, const nn::BatchNormBase& bn, const std::string& scope,
                            const std::string& x) {
  const std::string where = scope + " (" + bn.type_name() + ")";
  MOX_CHECK(bn.running_mean.defined() && bn.running_var.defined(), where,
            "has no running statistics (track_running_stats=false): it normalises with each batch's own "
            "statistics, which ONNX's BatchNormalization does not do");
  const int64_t c = bn.num_features;
  const std::string scale = bn.weight.defined() ? b.weight(scope + ".weight", bn.weight)
                                                : b.floats(scope + "/ones", std::vector<float>(size_t(c), 1.f), {c});
  const std::string shift = bn.bias.defined() ? b.weight(scope + ".bias", bn.bias)
                                              : b.floats(scope + "/zeros", std::vector<float>(size_t(c), 0.f), {c});
  return b.add1("BatchNormalization", scope,
                {x, scale, shift, b.buffer(scope + ".running_mean", bn.running_mean),
                 b.buffer(scope + ".running_var", bn.running_var)},
                {attr_f("epsilon", bn.eps)});
}

std::string emit_layer_norm(GraphBuilder& b, const nn::LayerNorm& ln, const std::string& scope, const std::string& x) {
  int64_t n = 1;
  for (int64_t d : ln.normalized_shape) n *= d;
  const std::string scale = ln.weight.defined()
                                ? b.weight(scope + ".weight", ln.weight)
                                : b.floats(scope + "/ones", std::vector<float>(size_t(n), 1.f), ln.normalized_shape);
  std::vector<std::string> in = {x, scale};
  if (ln.bias.defined()) in.push_back(b.weight(scope + ".bias", ln.bias));
  return b.add1("LayerNormalization", scope, in,
                {attr_i("axis", -int64_t(ln.normalized_shape.size())), attr_f("epsilon", ln.eps)});
}

std::string emit_embedding(GraphBuilder& b, const nn::Embedding& e, const std::string& scope, const std::string& ids) {
  return b.add1("Gather", scope, {b.weight(scope + ".weight", e.weight), ids}, {attr_i("axis", 0)});
}

// GELU(x) = x/2 (1 + erf(x / sqrt 2)), or GPT-2's x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
std::string emit_gelu(GraphBuilder& b, const std::string& scope, const std::string& x, bool tanh_approximation) {
  std::string inner;
  if (tanh_approximation) {
    const std::string x3 = b.add1("Pow", scope, {x, b.scalar(3.f)});
    const std::string cubic = b.add1("Add", scope, {x, b.add1("Mul", scope, {x3, b.scalar(0.044715f)})});
    inner = b.add1("Tanh", scope, {b.add1("Mul", scope, {cubic, b.scalar(float(std::sqrt(2.0 / std::numbers::pi)))})});
  } else {
    inner = b.add1("Erf", scope, {b.add1("Div", scope, {x, b.scalar(float(std::numbers::sqrt2))})});
  }
  const std::string one_plus = b.add1("Add", scope, {inner, b.scalar(1.f)});
  return b.add1("Mul", scope, {b.add1("Mul", scope, {x, one_plus}), b.scalar(0.5f)});
}

// Softplus(x) = log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's).
std::string emit_softplus(GraphBuilder& b, const nn::Softplus& s, const std::string& scope, const std::string& x) {
  const std::string bx = s.beta == 1.0 ? x : b.add1("Mul", scope, {x, b.scalar(float(s.beta))});
  std::string y = b.add1("Softplus", scope, {bx});
  if (s.beta != 1.0) y = b.add1("Div", scope, {y, b.scalar(float(s.beta))});
  const std::string linear = b.add1("Greater", scope, {bx, b.scalar(float(s.threshold))});
  return b.add1("Where", scope, {linear, x, y});
}

// Activations and the other shape-preserving layers; "" when `m` is none of them.
std::string emit_elementwise(GraphBuilder& b, const nn::Module& m, const std::string& scope, const std::string& x) {
  const std::string t = m.type_name();
  if (t == "Dropout" || t == "Identity") return x;  // eval mode
  if (t == "ReLU") return b.add1("Relu", scope, {x});
  if (t == "Sigmoid") return b.add1("Sigmoid", scope, {x});
  if (t == "Tanh") return b.add1("Tanh", scope, {x});
  if (t == "SELU") return b.add1("Selu", scope, {x});  // ONNX's default alpha and gamma are SELU's
  if (t == "SiLU") return b.add1("Mul", scope, {x, b.add1("Sigmoid", scope, {x})});
  if (t == "LeakyReLU")
    return b.add1("LeakyRelu", scope, {x}, {attr_f("alpha", static_cast<const nn::LeakyReLU&>(m).negative_slope)});
  if (t == "ELU") return b.add1("Elu", scope, {x}, {attr_f("alpha", static_cast<const nn::ELU&>(m).alpha)});
  if (t == "GELU") return emit_gelu(b, scope, x, static_cast<const nn::GELU&>(m).approximate == "tanh");
  if (t == "Softplus") return emit_softplus(b, static_cast<const nn::Softplus&>(m), scope, x);
  if (t == "Softmax") return b.add1("Softmax", scope, {x}, {attr_i("axis", static_cast<const nn::Softmax&>(m).dim)});
  if (t == "LogSoftmax")
    return b.add1("LogSoftmax", scope, {x}, {attr_i("axis", static_cast<const nn::LogSoftmax&>(m).dim)});
  return "";
}

const char* kSequentialLayers =
    "Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, Dropout, Identity, BatchNorm1d, BatchNorm2d, LayerNorm, "
    "Embedding, GlobalAveragePooling1D and the activations";

bool is_quantised(const std::string& type) {
  return type.rfind("Quantized", 0) == 0 || type.rfind("QAT", 0) == 0 || type.rfind("BlockQuant", 0) == 0;
}

// One layer of a Sequential (nested Sequentials recurse); returns the output value.
std::string emit_layer(GraphBuilder& b, const nn::Module& m, const std::string& scope, const std::string& x,
                       const Shape& in, const Shape& out) {
  const std::string t = m.type_name();
  const std::string where = "layer " + scope + " (" + t + ")";
  MOX_CHECK(!is_quantised(t), where, kQuantisedMessage);
  if (t == "Linear") return emit_linear(b, static_cast<const nn::Linear&>(m), scope, x, in.size());
  if (t == "Conv2d") return emit_conv2d(b, static_cast<const nn::Conv2d&>(m), scope, x);
  if (t == "MaxPool2d") return emit_max_pool(b, static_cast<const nn::MaxPool2d&>(m), scope, x, in, out);
  if (t == "AvgPool2d") return emit_avg_pool(b, static_cast<const nn::AvgPool2d&>(m), scope, x, in, out);
  if (t == "Flatten") return emit_flatten(b, static_cast<const nn::Flatten&>(m), scope, x, in);
  if (t == "BatchNorm1d" || t == "BatchNorm2d")
    return emit_batch_norm(b, static_cast<const nn::BatchNormBase&>(m), scope, x);
  if (t == "LayerNorm") return emit_layer_norm(b, static_cast<const nn::LayerNorm&>(m), scope, x);
  if (t == "Embedding") return emit_embedding(b, static_cast<const nn::Embedding&>(m), scope, x);
  if (t == "GlobalAveragePooling1D")
    return b.add1("ReduceMean", scope, {x}, {attr_ints("axes", {1}), attr_i("keepdims", 0)});
  if (std::string y = emit_elementwise(b, m, scope, x); !y.empty()) return y;
  throw Error(where, "ONNX export does not support " + t + " layers (it exports " + kSequentialLayers + ")");
}

std::string emit_sequential(GraphBuilder& b, const nn::Sequential& seq, const std::string& prefix, std::string x,
                            Shape shape) {
  for (const auto& [name, child] : seq.named_children()) {
    const std::string scope = prefix.empty() ? name : prefix + "." + name;
    const Shape out = child->output_shape(shape);
    if (auto nested = std::dynamic_pointer_cast<const nn::Sequential>(child)) {
      x = emit_sequential(b, *nested, scope, x, shape);
    } else {
      x = emit_layer(b, *child, scope, x, shape, out);
    }
    shape = out;
  }
  return x;
}

// The first layer that computes something (past Dropout / Identity), to type the input.
const nn::Module* first_layer(const nn::Sequential& seq) {
  for (const auto& [name, child] : seq.named_children()) {
    if (auto nested = std::dynamic_pointer_cast<const nn::Sequential>(child)) {
      if (const nn::Module* m = first_layer(*nested)) return m;
      continue;
    }
    const std::string t = child->type_name();
    if (t != "Dropout" && t != "Identity") return child.get();
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// GPT

// Causal self-attention of one block: x [B, T, C] -> [B, T, C] (before the residual add).
// mask: bool [T, T], true where a query may see a key.
std::string emit_attention(GraphBuilder& b, const nn::CausalSelfAttention& a, const std::string& scope,
                           const std::string& x, const std::string& mask) {
  const int64_t H = a.n_head, D = a.head_dim, A = H * D;
  const std::string qkv = emit_linear(b, *a.c_attn, scope + ".c_attn", x, 3);
  const std::vector<std::string> parts = b.add("Split", scope, {qkv, b.ints({A, A, A})}, {attr_i("axis", 2)}, 3);
  auto heads = [&](const std::string& t, std::vector<int64_t> perm) {  // [B, T, A] -> perm of [B, T, H, D]
    return b.add1("Transpose", scope, {b.add1("Reshape", scope, {t, b.ints({0, 0, H, D})})},
                  {attr_ints("perm", perm)});
  };
  const std::string q = heads(parts[0], {0, 2, 1, 3});  // [B, H, T, D]
  const std::string kt = heads(parts[1], {0, 2, 3, 1});  // [B, H, D, T]
  const std::string v = heads(parts[2], {0, 2, 1, 3});  // [B, H, T, D]
  std::string scores = b.add1("MatMul", scope, {q, kt});
  scores = b.add1("Mul", scope, {scores, b.scalar(float(1.0 / std::sqrt(double(D))))});
  scores = b.add1("Where", scope, {mask, scores, b.scalar(-std::numeric_limits<float>::infinity())});
  const std::string probs = b.add1("Softmax", scope, {scores}, {attr_i("axis", -1)});
  std::string y = b.add1("MatMul", scope, {probs, v});                                // [B, H, T, D]
  y = b.add1("Transpose", scope, {y}, {attr_ints("perm", {0, 2, 1, 3})});             // [B, T, H, D]
  y = b.add1("Reshape", scope, {y, b.ints({0, 0, A})});                               // [B, T, A]
  return emit_linear(b, *a.c_proj, scope + ".c_proj", y, 3);
}

std::string emit_gpt_mlp(GraphBuilder& b, const nn::GPTMLP& m, const std::string& scope, const std::string& x) {
  const std::string h = emit_linear(b, *m.c_fc, scope + ".c_fc", x, 3);
  return emit_linear(b, *m.c_proj, scope + ".c_proj", emit_gelu(b, scope + ".gelu", h, !m.exact_gelu), 3);
}

std::string emit_gpt_block(GraphBuilder& b, const nn::GPTBlock& blk, const std::string& scope, const std::string& x,
                           const std::string& mask) {
  const std::string a = emit_attention(b, *blk.attn, scope + ".attn", emit_layer_norm(b, *blk.ln_1, scope + ".ln_1", x), mask);
  const std::string h = b.add1("Add", scope, {x, a});
  const std::string m = emit_gpt_mlp(b, *blk.mlp, scope + ".mlp", emit_layer_norm(b, *blk.ln_2, scope + ".ln_2", h));
  return b.add1("Add", scope, {h, m});
}

// ---------------------------------------------------------------------------------------------

void init_model(onnx::ModelProto& model, const OnnxExportOptions& o, const std::string& default_name,
                const std::string& default_doc) {
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("mox");
  model.set_producer_version(MOX_VERSION);
  model.set_doc_string(o.doc_string.empty() ? default_doc : o.doc_string);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  for (const auto& [k, v] : o.metadata) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  }
  model.mutable_graph()->set_name(o.graph_name.empty() ? default_name : o.graph_name);
  model.mutable_graph()->set_doc_string(model.doc_string());
}

OnnxExportInfo write_model(const onnx::ModelProto& model, const GraphBuilder& b, const std::string& path) {
  const size_t size = model.ByteSizeLong();
  MOX_CHECK(size <= size_t(INT_MAX), path,
            "the model is " + std::to_string(size >> 20) + " MiB, over the 2 GiB a single ONNX (protobuf) file can hold");
  std::string bytes;
  MOX_CHECK(model.SerializeToString(&bytes), path, "could not serialise the ONNX model");
  write_file_atomic(path, bytes);
  OnnxExportInfo info;
  info.nodes = model.graph().node_size();
  info.initializers = model.graph().initializer_size();
  info.parameters = b.parameters();
  info.bytes = bytes.size();
  info.op_types = b.op_types();
  return info;
}

}  // namespace

OnnxExportInfo export_onnx_sequential(const nn::Sequential& model, const Shape& input_shape, const std::string& path,
                                      const OnnxExportOptions& options) {
  MOX_CHECK(!input_shape.empty() && input_shape[0] == -1, "ONNX export",
            "input_shape must start with -1 (the batch), got " + shape_str(input_shape));
  const Shape output_shape = model.output_shape(input_shape);  // validates the architecture
  onnx::ModelProto proto;
  init_model(proto, options, "mox_sequential", "a mox Sequential model: input -> output of its forward()");
  onnx::GraphProto& g = *proto.mutable_graph();
  GraphBuilder b(g);

  const nn::Module* first = first_layer(model);
  const bool token_ids = first && first->type_name() == "Embedding";
  std::map<size_t, std::string> in_dims = {{0, "batch"}};
  for (size_t i = 1; i < input_shape.size(); i++)
    if (input_shape[i] < 0) in_dims[i] = "input_dim" + std::to_string(i);
  GraphBuilder::declare(g.add_input(), "input", token_ids ? onnx::TensorProto::INT64 : onnx::TensorProto::FLOAT,
                        input_shape, in_dims);

  const std::string y = emit_sequential(b, model, "", "input", input_shape);
  b.name_output(y, "output");
  GraphBuilder::declare(g.add_output(), "output", onnx::TensorProto::FLOAT, output_shape, {{0, "batch"}});
  return write_model(proto, b, path);
}

OnnxExportInfo export_onnx_gpt(const nn::GPT& model, const std::string& path, const OnnxExportOptions& options) {
  const nn::GPTConfig& c = model.config();
  onnx::ModelProto proto;
  init_model(proto, options, "mox_gpt",
             "a mox GPT: input_ids [batch, sequence <= " + std::to_string(c.block_size) +
                 "] -> next-token logits [batch, sequence, " + std::to_string(c.vocab_size) + "]");
  onnx::GraphProto& g = *proto.mutable_graph();
  GraphBuilder b(g);
  GraphBuilder::declare(g.add_input(), "input_ids", onnx::TensorProto::INT64, {-1, -1}, {{0, "batch"}, {1, "sequence"}});

  // Token + position embeddings: the first T rows of wpe are positions 0..T-1.
  const std::string seq = b.add1("Shape", "transformer", {"input_ids"}, {attr_i("start", 1), attr_i("end", 2)});
  const std::string tok = emit_embedding(b, *model.wte, "transformer.wte", "input_ids");
  const std::string pos = b.add1("Slice", "transformer.wpe",
                                 {b.weight("transformer.wpe.weight", model.wpe->weight), b.ints({0}), seq, b.ints({0})});
  std::string x = b.add1("Add", "transformer", {tok, pos});

  // The causal mask: a constant lower triangle of block_size^2, its top-left [T, T] corner.
  const int64_t S = c.block_size;
  std::vector<uint8_t> tri(size_t(S * S), 0);
  for (int64_t i = 0; i < S; i++)
    for (int64_t j = 0; j <= i; j++) tri[size_t(i * S + j)] = 1;
  const std::string full_mask = b.bools("causal_mask", tri, {S, S});
  const std::string ends = b.add1("Concat", "transformer", {seq, seq}, {attr_i("axis", 0)});
  const std::string mask = b.add1("Slice", "transformer", {full_mask, b.ints({0, 0}), ends, b.ints({0, 1})});

  for (size_t l = 0; l < model.blocks.size(); l++)
    x = emit_gpt_block(b, *model.blocks[l], "transformer.h." + std::to_string(l), x, mask);
  x = emit_layer_norm(b, *model.ln_f, "transformer.ln_f", x);
  // The head: lm_head.weight, or the token embedding's when tied (then stored once).
  MOX_CHECK(!model.lm_head || model.lm_head->weight.defined(), "lm_head", kQuantisedMessage);
  const std::string head = model.lm_head ? b.weight("lm_head.weight", model.lm_head->weight)
                                         : b.weight("transformer.wte.weight", model.wte->weight);
  const std::string head_t = b.add1("Transpose", "lm_head", {head}, {attr_ints("perm", {1, 0})});
  b.name_output(b.add1("MatMul", "lm_head", {x, head_t}), "logits");
  GraphBuilder::declare(g.add_output(), "logits", onnx::TensorProto::FLOAT, {-1, -1, c.vocab_size},
                        {{0, "batch"}, {1, "sequence"}});
  return write_model(proto, b, path);
}

}  // namespace mox::io
