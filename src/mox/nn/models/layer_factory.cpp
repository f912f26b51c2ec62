#include "mox/nn/models/layer_factory.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "mox/nn/models/build_model.h"
#include "mox/nn/models/last_time_step.h"
#include "mox/nn/nn.h"

namespace mox::nn {

using io::ConfigTable;
using Modules = std::vector<std::shared_ptr<Module>>;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------- option helpers

// "(3, 5)" (Size2::str() inlined here trips GCC 12's false -Wrestrict warning).
std::string pair_str(Size2 v) {
  std::string s = "(";
  s += std::to_string(v.h);
  s += ", ";
  s += std::to_string(v.w);
  s += ")";
  return s;
}

Error input_error(const ConfigTable& t, const std::string& layer, const std::string& expected,
                  const Shape& in) {
  return t.error("", layer + " expects input " + expected + ", but the previous layer outputs " +
                         format_shape(in));
}

int64_t check_positive(const ConfigTable& t, const std::string& key, int64_t v) {
  if (v <= 0) throw t.error(key, "must be a positive integer, got " + std::to_string(v));
  return v;
}

// A required positive integer known by several names ("out_features" / "units").
int64_t required_size(const ConfigTable& t, const std::vector<std::string>& names) {
  std::string key = t.pick_key(names);
  if (key.empty()) {
    std::string alt;
    for (size_t i = 1; i < names.size(); i++) alt += (i > 1 ? ", " : "") + names[i];
    throw t.error(names[0], "required field is missing" +
                                (alt.empty() ? std::string() : " (or: " + alt + ")"));
  }
  return check_positive(t, key, t.get_int(key));
}

// Optional bool known by several names ("bias" / "use_bias").
bool flag(const ConfigTable& t, const std::vector<std::string>& names, bool fallback) {
  std::string key = t.pick_key(names);
  return key.empty() ? fallback : t.get_bool(key);
}

double number(const ConfigTable& t, const std::vector<std::string>& names, double fallback) {
  std::string key = t.pick_key(names);
  return key.empty() ? fallback : t.get_float(key);
}

// An input size that is inferred; a value the user gives anyway must agree with it.
int64_t inferred(const ConfigTable& t, const std::string& key, int64_t from_input,
                 const std::string& what) {
  if (from_input < 0)
    throw t.error(key.empty() ? "" : key, "cannot infer " + what +
                                              ": that dim of the previous layer's output is "
                                              "unknown (None)");
  if (auto given = t.get_opt_int(key); given && *given != from_input)
    throw t.error(key, "is " + std::to_string(*given) + " but the previous layer outputs " +
                           std::to_string(from_input) + " " + what +
                           " (it is inferred; it may be left out)");
  return from_input;
}

// kernel_size = 3 or [3, 5], under any of `names`; fallback when absent (nullopt: required).
std::optional<Size2> size2(const ConfigTable& t, const std::vector<std::string>& names,
                           std::optional<Size2> fallback, int64_t min_value) {
  std::string key = t.pick_key(names);
  if (key.empty()) {
    if (!fallback) throw t.error(names[0], "required field is missing");
    return fallback;
  }
  std::vector<int64_t> v = t.get_int_or_list(key, 2);
  for (int64_t x : v)
    if (x < min_value)
      throw t.error(key, "must be " + std::string(min_value > 0 ? "positive" : "non-negative") +
                             ", got " + std::to_string(x));
  return Size2(v[0], v[1]);
}

// Appends the module for `activation = "..."` when the table has one.
Modules with_activation(const ConfigTable& t, std::shared_ptr<Module> layer) {
  Modules out{std::move(layer)};
  if (auto a = t.get_opt_string("activation"))
    if (auto act = make_activation(t, "activation", *a)) out.push_back(act);
  return out;
}

// ---------------------------------------------------------------- layers

Modules make_linear(const ConfigTable& t, const Shape& in) {
  int64_t out_f = required_size(t, {"out_features", "units"});
  bool bias = flag(t, {"bias", "use_bias"}, true);
  if (in.size() < 2) throw input_error(t, "Linear", "(None, ..., in_features)", in);
  int64_t in_f = inferred(t, "in_features", in.back(), "features");
  return with_activation(t, std::make_shared<Linear>(in_f, out_f, bias));
}

Modules make_conv2d(const ConfigTable& t, const Shape& in) {
  int64_t o = required_size(t, {"out_channels", "filters"});
  Size2 k = *size2(t, {"kernel_size"}, std::nullopt, 1);
  Size2 s = *size2(t, {"stride", "strides"}, Size2(1), 1);
  Size2 d = *size2(t, {"dilation", "dilation_rate"}, Size2(1), 1);
  Size2 p(0);
  if (const io::ConfigValue* v = t.find("padding"); v && v->is_string()) {
    std::string mode = std::get<std::string>(v->v);
    if (mode == "same") {
      // PyTorch's padding='same': output size = input size, for stride 1 only; an even
      // effective kernel would need asymmetric padding, which conv2d does not take.
      int64_t eh = d.h * (k.h - 1), ew = d.w * (k.w - 1);
      if (!(s == Size2(1)))
        throw t.value_error(*v, "\"same\" needs stride 1, got stride " + pair_str(s));
      if (eh % 2 || ew % 2)
        throw t.value_error(*v, "\"same\" needs an odd kernel size (with dilation), got " +
                                    pair_str(k));
      p = Size2(eh / 2, ew / 2);
    } else if (mode != "valid") {
      throw t.value_error(*v, "expected an integer, [h, w], \"valid\" or \"same\", got " +
                                  v->describe());
    }
  } else {
    p = *size2(t, {"padding"}, Size2(0), 0);
  }
  int64_t groups = check_positive(t, "groups", t.get_int("groups", 1));
  bool bias = flag(t, {"bias", "use_bias"}, true);
  if (in.size() != 4) throw input_error(t, "Conv2d", "(None, C, H, W)", in);
  int64_t c = inferred(t, "in_channels", in[1], "channels");
  if (c % groups || o % groups)
    throw t.error("groups", "must divide in_channels (" + std::to_string(c) +
                                ") and out_channels (" + std::to_string(o) + "), got " +
                                std::to_string(groups));
  Conv2dOptions opt(c, o, k);
  opt.stride(s).padding(p).dilation(d).groups(groups).bias(bias);
  return with_activation(t, std::make_shared<Conv2d>(opt));
}

template <typename Pool>
Modules make_pool(const ConfigTable& t, const Shape& in, const char* name) {
  Size2 k = *size2(t, {"kernel_size", "pool_size"}, std::nullopt, 1);
  std::optional<Size2> s = size2(t, {"stride", "strides"}, k, 1);
  Size2 p = *size2(t, {"padding"}, Size2(0), 0);
  if (2 * p.h > k.h || 2 * p.w > k.w)
    throw t.error("padding", "must be at most half the kernel size " + pair_str(k) + ", got " + pair_str(p));
  bool ceil = t.get_bool("ceil_mode", false);
  if (in.size() != 4) throw input_error(t, name, "(None, C, H, W)", in);
  if constexpr (std::is_same_v<Pool, AvgPool2d>)
    return {std::make_shared<AvgPool2d>(k, s, p, ceil, t.get_bool("count_include_pad", true))};
  else
    return {std::make_shared<MaxPool2d>(k, s, p, ceil)};
}
Modules make_max_pool(const ConfigTable& t, const Shape& in) {
  return make_pool<MaxPool2d>(t, in, "MaxPool2d");
}
Modules make_avg_pool(const ConfigTable& t, const Shape& in) {
  return make_pool<AvgPool2d>(t, in, "AvgPool2d");
}

Modules make_flatten(const ConfigTable& t, const Shape& in) {
  return {std::make_shared<Flatten>(t.get_int("start_dim", 1), t.get_int("end_dim", -1))};
}

Modules make_dropout(const ConfigTable& t, const Shape& in) {
  std::string key = t.pick_key({"p", "rate"});
  double p = key.empty() ? 0.5 : t.get_float(key);
  if (p < 0.0 || p > 1.0) throw t.error(key, "must be in [0, 1], got " + std::to_string(p));
  return {std::make_shared<Dropout>(p)};
}

Modules make_embedding(const ConfigTable& t, const Shape& in) {
  int64_t n = required_size(t, {"num_embeddings", "input_dim"});
  int64_t d = required_size(t, {"embedding_dim", "output_dim"});
  std::optional<int64_t> pad = t.get_opt_int("padding_idx");
  if (pad && (*pad < -n || *pad >= n))
    throw t.error("padding_idx", "must be in [" + std::to_string(-n) + ", " + std::to_string(n) +
                                     "), got " + std::to_string(*pad));
  return {std::make_shared<Embedding>(n, d, pad)};
}

// RNN / LSTM / GRU on [N, T, C] (batch_first: the batch dim always comes first here).
template <typename Layer>
Modules make_recurrent(const ConfigTable& t, const Shape& in, const char* name) {
  RNNOptions o(1, required_size(t, {"hidden_size", "units"}));
  o.num_layers(check_positive(t, "num_layers", t.get_int("num_layers", 1)));
  o.bias(flag(t, {"bias", "use_bias"}, true));
  o.batch_first(true);
  double dropout = t.get_float("dropout", 0.0);
  if (dropout < 0.0 || dropout > 1.0)
    throw t.error("dropout", "must be in [0, 1], got " + std::to_string(dropout));
  o.dropout(dropout);
  o.bidirectional(t.get_bool("bidirectional", false));
  if constexpr (std::is_same_v<Layer, RNN>) {
    // Keras's SimpleRNN calls the cell's nonlinearity `activation`.
    std::string key = t.pick_key({"nonlinearity", "activation"});
    if (!key.empty()) {
      std::string nl = t.get_string(key);
      if (nl != "tanh" && nl != "relu")
        throw t.error(key, "expected \"tanh\" or \"relu\", got \"" + nl + "\"");
      o.nonlinearity(nl);
    }
  }
  bool return_sequences = t.get_bool("return_sequences", false);
  if (in.size() != 3) throw input_error(t, name, "(None, T, C)", in);
  o.input_size(inferred(t, "input_size", in[2], "features"));
  Modules out{std::make_shared<Layer>(o)};
  if (!return_sequences)
    out.push_back(std::make_shared<LastTimeStep>(o.bidirectional()));
  return out;
}
Modules make_rnn(const ConfigTable& t, const Shape& in) { return make_recurrent<RNN>(t, in, "RNN"); }
Modules make_lstm(const ConfigTable& t, const Shape& in) {
  return make_recurrent<LSTM>(t, in, "LSTM");
}
Modules make_gru(const ConfigTable& t, const Shape& in) { return make_recurrent<GRU>(t, in, "GRU"); }

Modules make_layer_norm(const ConfigTable& t, const Shape& in) {
  Shape ns;
  if (t.has("normalized_shape")) {
    const io::ConfigValue* v = t.find("normalized_shape");
    ns = v->is_int() ? Shape{std::get<int64_t>(v->v)} : t.get_int_list("normalized_shape");
    if (ns.empty() || ns.size() >= in.size() ||
        !std::equal(ns.begin(), ns.end(), in.end() - int64_t(ns.size())))
      throw t.error("normalized_shape", "must be trailing dims of the input " + format_shape(in) +
                                            ", got " + shape_str(ns));
  } else {
    if (in.size() < 2 || in.back() < 0) throw input_error(t, "LayerNorm", "(None, ..., C)", in);
    ns = {in.back()};  // the feature dim, as Keras's LayerNormalization(axis=-1)
  }
  double eps = number(t, {"eps", "epsilon"}, 1e-5);
  return {std::make_shared<LayerNorm>(ns, eps, t.get_bool("elementwise_affine", true))};
}

template <typename BN>
Modules make_bn(const ConfigTable& t, const Shape& in) {
  int64_t c = inferred(t, "num_features", in.size() >= 2 ? in[1] : -1, "channels (dim 1)");
  double eps = number(t, {"eps", "epsilon"}, 1e-5);
  double momentum = t.get_float("momentum", 0.1);
  if (momentum < 0.0 || momentum > 1.0)
    throw t.error("momentum", "must be in [0, 1] (PyTorch's meaning: the weight of the new "
                              "batch), got " + std::to_string(momentum));
  return {std::make_shared<BN>(c, eps, momentum, t.get_bool("affine", true),
                               t.get_bool("track_running_stats", true))};
}
Modules make_bn1d(const ConfigTable& t, const Shape& in) {
  if (in.size() != 2 && in.size() != 3) throw input_error(t, "BatchNorm1d", "(None, C) or (None, C, L)", in);
  return make_bn<BatchNorm1d>(t, in);
}
Modules make_bn2d(const ConfigTable& t, const Shape& in) {
  if (in.size() != 4) throw input_error(t, "BatchNorm2d", "(None, C, H, W)", in);
  return make_bn<BatchNorm2d>(t, in);
}
Modules make_bn_any(const ConfigTable& t, const Shape& in) {
  return in.size() == 4 ? make_bn2d(t, in) : make_bn1d(t, in);
}

Modules make_gap1d(const ConfigTable& t, const Shape& in) {
  if (in.size() != 3) throw input_error(t, "GlobalAveragePooling1D", "(None, T, C)", in);
  return {std::make_shared<GlobalAveragePooling1D>()};
}

Modules make_identity(const ConfigTable& t, const Shape& in) {
  return {std::make_shared<Identity>()};
}

// Keras's Activation("relu") layer.
Modules make_keras_activation(const ConfigTable& t, const Shape& in) {
  auto act = make_activation(t, "activation", t.get_string("activation"));
  return {act ? act : std::make_shared<Identity>()};
}

// Activation modules named by their class, with their constructor options.
Modules make_named_activation(const ConfigTable& t, const std::string& cls) {
  if (cls == "ReLU") return {std::make_shared<ReLU>()};
  if (cls == "LeakyReLU") return {std::make_shared<LeakyReLU>(t.get_float("negative_slope", 0.01))};
  if (cls == "ELU") return {std::make_shared<ELU>(t.get_float("alpha", 1.0))};
  if (cls == "SELU") return {std::make_shared<SELU>()};
  if (cls == "GELU") {
    std::string a = t.get_string("approximate", "none");
    if (a != "none" && a != "tanh")
      throw t.error("approximate", "expected \"none\" or \"tanh\", got \"" + a + "\"");
    return {std::make_shared<GELU>(a)};
  }
  if (cls == "Sigmoid") return {std::make_shared<Sigmoid>()};
  if (cls == "Tanh") return {std::make_shared<Tanh>()};
  if (cls == "Softplus")
    return {std::make_shared<Softplus>(t.get_float("beta", 1.0), t.get_float("threshold", 20.0))};
  if (cls == "SiLU") return {std::make_shared<SiLU>()};
  if (cls == "Softmax") return {std::make_shared<Softmax>(t.get_int("dim", -1))};
  return {std::make_shared<LogSoftmax>(t.get_int("dim", -1))};  // LogSoftmax
}
#define MOX_ACTIVATION_FACTORY(Cls) \
  Modules make_##Cls(const ConfigTable& t, const Shape&) { return make_named_activation(t, #Cls); }
MOX_ACTIVATION_FACTORY(ReLU)
MOX_ACTIVATION_FACTORY(LeakyReLU)
MOX_ACTIVATION_FACTORY(ELU)
MOX_ACTIVATION_FACTORY(SELU)
MOX_ACTIVATION_FACTORY(GELU)
MOX_ACTIVATION_FACTORY(Sigmoid)
MOX_ACTIVATION_FACTORY(Tanh)
MOX_ACTIVATION_FACTORY(Softplus)
MOX_ACTIVATION_FACTORY(SiLU)
MOX_ACTIVATION_FACTORY(Softmax)
MOX_ACTIVATION_FACTORY(LogSoftmax)
#undef MOX_ACTIVATION_FACTORY

struct Entry {
  std::vector<std::string> names;  // the PyTorch name first, then aliases
  LayerFactory factory;
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> r = {
      {{"Linear", "Dense"}, {"Linear", make_linear}},
      {{"Conv2d", "Conv2D"}, {"Conv2d", make_conv2d}},
      {{"MaxPool2d", "MaxPooling2D"}, {"MaxPool2d", make_max_pool}},
      {{"AvgPool2d", "AveragePooling2D"}, {"AvgPool2d", make_avg_pool}},
      {{"Flatten"}, {"Flatten", make_flatten}},
      {{"Dropout"}, {"Dropout", make_dropout}},
      {{"Embedding"}, {"Embedding", make_embedding}},
      {{"RNN", "SimpleRNN"}, {"RNN", make_rnn}},
      {{"LSTM"}, {"LSTM", make_lstm}},
      {{"GRU"}, {"GRU", make_gru}},
      {{"LayerNorm", "LayerNormalization"}, {"LayerNorm", make_layer_norm}},
      {{"BatchNorm1d"}, {"BatchNorm1d", make_bn1d}},
      {{"BatchNorm2d"}, {"BatchNorm2d", make_bn2d}},
      {{"BatchNormalization"}, {"BatchNorm", make_bn_any}},
      {{"GlobalAveragePooling1D"}, {"GlobalAveragePooling1D", make_gap1d}},
      {{"Identity"}, {"Identity", make_identity}},
      {{"Activation"}, {"Activation", make_keras_activation}},
      {{"ReLU"}, {"ReLU", make_ReLU}},
      {{"LeakyReLU"}, {"LeakyReLU", make_LeakyReLU}},
      {{"ELU"}, {"ELU", make_ELU}},
      {{"SELU"}, {"SELU", make_SELU}},
      {{"GELU"}, {"GELU", make_GELU}},
      {{"Sigmoid"}, {"Sigmoid", make_Sigmoid}},
      {{"Tanh"}, {"Tanh", make_Tanh}},
      {{"Softplus"}, {"Softplus", make_Softplus}},
      {{"SiLU"}, {"SiLU", make_SiLU}},
      {{"Softmax"}, {"Softmax", make_Softmax}},
      {{"LogSoftmax"}, {"LogSoftmax", make_LogSoftmax}},
  };
  return r;
}

}  // namespace

const LayerFactory* find_layer_factory(const std::string& type) {
  static const std::map<std::string, const LayerFactory*> by_name = [] {
    std::map<std::string, const LayerFactory*> m;
    for (const Entry& e : registry())
      for (const std::string& n : e.names) m[lower(n)] = &e.factory;
    return m;
  }();
  auto it = by_name.find(lower(type));
  return it == by_name.end() ? nullptr : it->second;
}

const std::vector<std::string>& layer_type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Entry& e : registry()) n.insert(n.end(), e.names.begin(), e.names.end());
    return n;
  }();
  return names;
}

std::shared_ptr<Module> make_activation(const ConfigTable& t, const std::string& key,
                                        const std::string& name) {
  std::string n = lower(name);
  if (n == "linear" || n == "none" || n == "identity") return nullptr;
  if (n == "relu") return std::make_shared<ReLU>();
  if (n == "leaky_relu") return std::make_shared<LeakyReLU>();
  if (n == "elu") return std::make_shared<ELU>();
  if (n == "selu") return std::make_shared<SELU>();
  if (n == "gelu") return std::make_shared<GELU>();
  if (n == "gelu_tanh") return std::make_shared<GELU>("tanh");
  if (n == "sigmoid") return std::make_shared<Sigmoid>();
  if (n == "tanh") return std::make_shared<Tanh>();
  if (n == "softplus") return std::make_shared<Softplus>();
  if (n == "silu" || n == "swish") return std::make_shared<SiLU>();
  if (n == "softmax") return std::make_shared<Softmax>(-1);
  if (n == "log_softmax") return std::make_shared<LogSoftmax>(-1);
  throw t.error(key, "unknown activation \"" + name +
                         "\" (known: relu, leaky_relu, elu, selu, gelu, gelu_tanh, sigmoid, "
                         "tanh, softplus, silu, swish, softmax, log_softmax, linear)");
}

}  // namespace mox::nn
