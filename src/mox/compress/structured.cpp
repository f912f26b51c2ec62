// Structured pruning (see structured.h for the rules and formulas).
#include "mox/compress/structured.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "mox/autograd/node.h"
#include "mox/nn/layers/batch_norm.h"
#include "mox/nn/layers/conv2d.h"
#include "mox/nn/layers/flatten.h"
#include "mox/nn/layers/linear.h"
#include "mox/nn/layers/rnn_base.h"
#include "mox/nn/models/build_model.h"
#include "mox/ops/ops.h"
#include "mox/tensor/generator.h"

namespace mox::compress {

namespace {

constexpr const char* kWhere = "prune_structured";

void check_fraction(double f, const char* where) {
  MOX_CHECK(std::isfinite(f) && f > 0.0 && f < 1.0, where,
            "fraction must be in (0, 1), got " + std::to_string(f));
}

int64_t keep_count(double fraction, int64_t units) {
  return std::max<int64_t>(1, std::llround((1.0 - fraction) * double(units)));
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Host f64 copy of a tensor's values, row-major.
std::vector<double> host_values(const Tensor& t) {
  return t.detach().to(kCPU).to(DType::F64).contiguous().to_vector<double>();
}

// L1 norm of each of the first-dim slices of w ([units, ...]).
std::vector<double> row_l1(const Tensor& w) {
  const int64_t units = w.size(0), per = units ? w.numel() / units : 0;
  const std::vector<double> v = host_values(w);
  std::vector<double> s(size_t(units), 0.0);
  for (int64_t u = 0; u < units; u++)
    for (int64_t i = 0; i < per; i++) s[size_t(u)] += std::abs(v[size_t(u * per + i)]);
  return s;
}

Tensor index_tensor(const std::vector<int64_t>& idx, Device dev) {
  return from_vector(idx, {int64_t(idx.size())}).to(dev);
}

// x.index_select(dim, idx) as a fresh contiguous tensor (no autograd history).
Tensor take(const Tensor& x, int64_t dim, const std::vector<int64_t>& idx) {
  NoGradGuard ng;
  return index_select(x.detach(), dim, index_tensor(idx, x.device())).contiguous();
}

// Restores the default generator's state on scope exit (build_model initialises weights).
struct GeneratorStateGuard {
  Generator::State s = default_generator().state();
  ~GeneratorStateGuard() { default_generator().set_state(s); }
};

// The number of Sequential children a [[model.layers]] table becomes (build_model's rules:
// Linear / Conv2d add their `activation` module, a recurrent layer without return_sequences
// adds a LastTimeStep).
size_t modules_of(const io::ConfigTable& t) {
  const std::string type = lower(t.get_string("type"));
  if (type == "linear" || type == "dense" || type == "conv2d") {
    if (!t.has("activation")) return 1;
    const std::string a = lower(t.get_string("activation"));
    return (a == "linear" || a == "none" || a == "identity") ? 1 : 2;
  }
  if (type == "rnn" || type == "simplernn" || type == "lstm" || type == "gru")
    return t.get_bool("return_sequences", false) ? 1 : 2;
  return 1;
}

bool is_plain_linear(const nn::Module& m) {
  auto* l = dynamic_cast<const nn::Linear*>(&m);
  return l && m.type_name() == "Linear" && l->weight.defined();
}
bool is_plain_conv(const nn::Module& m) {
  auto* c = dynamic_cast<const nn::Conv2d*>(&m);
  return c && m.type_name() == "Conv2d" && c->weight.defined() && c->options.groups() == 1;
}
bool is_recurrent(const nn::Module& m) {
  return dynamic_cast<const nn::RNNBase*>(&m) != nullptr &&
         (m.type_name() == "RNN" || m.type_name() == "LSTM" || m.type_name() == "GRU");
}

// How a producer's units sit in a later layer's input: along dim `dim`, whose index is
// (outer * units + u) * inner + r.
struct UnitLayout {
  int64_t dim = 1, outer = 1, inner = 1;
  bool plain() const { return outer == 1 && inner == 1; }
};

enum class Role { Follower, Consumer };

// The layers after producer i that change with its units: BatchNorm followers and the one
// consumer (with the layout its input has). Empty consumer: i cannot be pruned.
struct Chain {
  std::vector<size_t> followers;  // BatchNorm children
  std::optional<size_t> consumer;
  UnitLayout layout;
};

Chain follow(const nn::Sequential& model, const std::vector<Shape>& shapes, size_t i) {
  static const std::set<std::string> passthrough = {"ReLU", "LeakyReLU", "ELU",      "SELU",
                                                    "GELU", "Sigmoid",   "Tanh",     "Softplus",
                                                    "SiLU", "Identity",  "Dropout"};
  Chain c;
  UnitLayout u;
  u.dim = is_plain_conv(*model[i]) ? 1 : int64_t(shapes[i + 1].size()) - 1;
  for (size_t j = i + 1; j < model.size(); j++) {
    const nn::Module& m = *model[j];
    const Shape& in = shapes[j];
    const int64_t rank = int64_t(in.size());
    const std::string type = m.type_name();
    if (passthrough.count(type)) continue;
    if (type == "MaxPool2d" || type == "AvgPool2d") {
      if (rank == 4 && u.dim == 1 && u.plain()) continue;
      return {};
    }
    if ((type == "BatchNorm1d" || type == "BatchNorm2d") && dynamic_cast<const nn::BatchNormBase*>(&m)) {
      if (u.dim == 1 && u.plain()) {
        c.followers.push_back(j);
        continue;
      }
      return {};
    }
    if (type == "Flatten" && dynamic_cast<const nn::Flatten*>(&m)) {
      const auto& f = dynamic_cast<const nn::Flatten&>(m);
      int64_t s = f.start_dim < 0 ? f.start_dim + rank : f.start_dim;
      int64_t e = f.end_dim < 0 ? f.end_dim + rank : f.end_dim;
      if (s < 0 || e >= rank || s > e) return {};
      if (u.dim > e) {
        u.dim -= e - s;
      } else if (u.dim >= s) {
        for (int64_t d = s; d < u.dim; d++) {
          if (in[size_t(d)] < 0) return {};
          u.outer *= in[size_t(d)];
        }
        for (int64_t d = u.dim + 1; d <= e; d++) {
          if (in[size_t(d)] < 0) return {};
          u.inner *= in[size_t(d)];
        }
        u.dim = s;
      }
      continue;
    }
    if (type == "GlobalAveragePooling1D") {
      if (rank == 3 && u.dim == 2) {
        u.dim = 1;
        continue;
      }
      return {};
    }
    if (is_plain_linear(m)) {
      if (u.dim != rank - 1) return {};
    } else if (is_plain_conv(m)) {
      if (rank != 4 || u.dim != 1 || !u.plain()) return {};
    } else if (is_recurrent(m)) {
      if (rank != 3 || u.dim != 2 || !u.plain()) return {};
    } else {
      return {};  // anything else (Softmax, LayerNorm, Embedding, ...) is not followed
    }
    c.consumer = j;
    c.layout = u;
    return c;
  }
  return {};  // the end of the model: i is the output layer
}

// The consumer's kept input indices: (o * units + u) * inner + r for kept u.
std::vector<int64_t> consumer_columns(const UnitLayout& l, int64_t units, const std::vector<int64_t>& keep) {
  std::vector<int64_t> cols;
  cols.reserve(size_t(l.outer) * keep.size() * size_t(l.inner));
  for (int64_t o = 0; o < l.outer; o++)
    for (int64_t u : keep)
      for (int64_t r = 0; r < l.inner; r++) cols.push_back((o * units + u) * l.inner + r);
  return cols;
}

// The first of `keys` the layer table holds ("" when none).
std::string present_key(const io::ConfigTable& t, const std::vector<std::string>& keys) {
  for (const std::string& k : keys)
    if (t.has(k)) return k;
  return "";
}

}  // namespace

std::vector<int64_t> keep_largest(const std::vector<double>& scores, int64_t keep) {
  MOX_CHECK(keep >= 0 && keep <= int64_t(scores.size()), "keep_largest",
            "keep " + std::to_string(keep) + " of " + std::to_string(scores.size()) + " scores");
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[size_t(a)] > scores[size_t(b)]; });
  order.resize(size_t(keep));
  std::sort(order.begin(), order.end());
  return order;
}

StructuredPruneResult prune_structured(const nn::Sequential& model, const io::Config& config,
                                       const StructuredPruneOptions& options) {
  check_fraction(options.fraction, kWhere);
  MOX_CHECK(!config.text.empty(), kWhere, "the config has no TOML text (io::Config::text)");
  const size_t n = model.size();

  // Sequential child -> [[model.layers]] index.
  std::vector<size_t> layer_of;
  for (size_t li = 0; li < config.model.layers.size(); li++)
    for (size_t k = modules_of(*config.model.layers[li]); k > 0; k--) layer_of.push_back(li);
  MOX_CHECK(layer_of.size() == n, kWhere,
            "the config's " + std::to_string(config.model.layers.size()) + " layers build " +
                std::to_string(layer_of.size()) + " modules, the model has " + std::to_string(n) +
                " (not the model of this config)");

  std::vector<std::string> names;
  for (const auto& [name, m] : model.named_children()) names.push_back(name);
  for (const std::string& s : options.skip)
    MOX_CHECK(std::find(names.begin(), names.end(), s) != names.end(), kWhere,
              "skip: \"" + s + "\" is not a layer of the model (layers are named 0.." +
                  std::to_string(n ? n - 1 : 0) + ")");

  // shapes[j]: the input shape of child j; shapes[n]: the model's output shape.
  std::vector<Shape> shapes{nn::model_input_shape(config.model)};
  for (size_t j = 0; j < n; j++) shapes.push_back(model[j]->output_shape(shapes.back()));

  struct Pruned {
    std::vector<int64_t> keep;
    int64_t units = 0;
    Chain chain;
  };
  std::map<size_t, Pruned> pruned;  // producer child -> what is kept
  StructuredPruneResult result;
  for (size_t i = 0; i < n; i++) {
    const nn::Module& m = *model[i];
    const bool linear = is_plain_linear(m), conv = is_plain_conv(m);
    if (!linear && !conv) {  // grouped convolutions, Linears without a float weight: left alone
      if (auto* l = dynamic_cast<const nn::Linear*>(&m))
        result.layers.push_back({names[i], {l->out_features, l->out_features}});
      else if (auto* cv = dynamic_cast<const nn::Conv2d*>(&m))
        result.layers.push_back({names[i], {cv->options.out_channels(), cv->options.out_channels()}});
      continue;
    }
    const Tensor& w = linear ? dynamic_cast<const nn::Linear&>(m).weight : dynamic_cast<const nn::Conv2d&>(m).weight;
    const int64_t units = w.size(0);
    int64_t after = units;
    const bool skipped = std::find(options.skip.begin(), options.skip.end(), names[i]) != options.skip.end();
    if (!skipped) {
      Chain chain = follow(model, shapes, i);
      if (chain.consumer) {
        const int64_t k = keep_count(options.fraction, units);
        if (k < units) {
          pruned[i] = Pruned{keep_largest(row_l1(w), k), units, chain};
          after = k;
        }
      }
    }
    result.layers.push_back({names[i], {units, after}});
  }

  // The rewritten config.
  std::vector<std::string> overrides;
  auto set_key = [&](size_t child, const std::vector<std::string>& keys, int64_t value, bool required) {
    const size_t li = layer_of[child];
    const io::ConfigTable& t = *config.model.layers[li];
    const std::string key = present_key(t, keys);
    if (key.empty()) {
      MOX_CHECK(!required, kWhere, t.path() + " has none of the size keys it was built from");
      return;
    }
    overrides.push_back("model.layers[" + std::to_string(li) + "]." + key + "=" + std::to_string(value));
  };
  for (const auto& [i, p] : pruned) {
    const int64_t k = int64_t(p.keep.size());
    if (is_plain_linear(*model[i])) set_key(i, {"out_features", "units"}, k, true);
    else set_key(i, {"out_channels", "filters"}, k, true);
    for (size_t f : p.chain.followers) set_key(f, {"num_features"}, k, false);
    const size_t c = *p.chain.consumer;
    if (is_plain_linear(*model[c])) set_key(c, {"in_features"}, p.chain.layout.outer * k * p.chain.layout.inner, false);
    else if (is_plain_conv(*model[c])) set_key(c, {"in_channels"}, k, false);
    else set_key(c, {"input_size"}, k, false);
  }
  result.config_text = io::apply_overrides(config.text, config.path, overrides);

  // The smaller model, built from that text.
  io::Config cfg = io::parse_config(result.config_text, config.path);
  std::shared_ptr<nn::Sequential> out;
  {
    GeneratorStateGuard keep_rng;
    out = nn::build_model(cfg.model);
  }
  MOX_CHECK(out->size() == n, kWhere, "the rewritten config builds " + std::to_string(out->size()) +
                                          " modules, expected " + std::to_string(n));
  for (size_t j = 0; j < n; j++)
    MOX_CHECK((*out)[j]->type_name() == model[j]->type_name(), kWhere,
              "layer " + names[j] + " is a " + model[j]->type_name() + " in the model but the config builds a " +
                  (*out)[j]->type_name());
  const std::vector<Tensor> params = model.parameters();
  if (!params.empty()) {
    out->to(params.front().dtype());
    out->to(params.front().device());
  }

  // Kept weights: producer rows, follower channels, consumer columns.
  std::map<size_t, std::vector<std::pair<Role, size_t>>> roles;  // child -> (role, producer)
  for (const auto& [i, p] : pruned) {
    for (size_t f : p.chain.followers) roles[f].push_back({Role::Follower, i});
    roles[*p.chain.consumer].push_back({Role::Consumer, i});
  }
  nn::StateDict sd;
  for (const auto& [key, value] : model.state_dict()) {
    Tensor t = value;
    const size_t dot = key.find('.');
    const std::string child = key.substr(0, dot), param = key.substr(dot + 1);
    const size_t j = size_t(std::find(names.begin(), names.end(), child) - names.begin());
    if (j < n) {
      if (auto r = roles.find(j); r != roles.end()) {
        for (const auto& [role, producer] : r->second) {
          const Pruned& p = pruned.at(producer);
          if (role == Role::Follower) {
            if (param == "weight" || param == "bias" || param == "running_mean" || param == "running_var")
              t = take(t, 0, p.keep);
          } else if (is_plain_conv(*model[j])) {
            if (param == "weight") t = take(t, 1, p.keep);
          } else if (is_plain_linear(*model[j])) {
            if (param == "weight") t = take(t, 1, consumer_columns(p.chain.layout, p.units, p.keep));
          } else if (param == "weight_ih_l0" || param == "weight_ih_l0_reverse") {
            t = take(t, 1, consumer_columns(p.chain.layout, p.units, p.keep));
          }
        }
      }
      if (auto p = pruned.find(j); p != pruned.end() && (param == "weight" || param == "bias"))
        t = take(t, 0, p->second.keep);
    }
    sd.insert(key, t);
  }
  out->load_state_dict(sd, /*strict=*/true);
  out->train(model.is_training());

  result.model = out;
  result.params_before = model.num_parameters();
  result.params_after = out->num_parameters();
  return result;
}

// ------------------------------------------------------------------------------------ GPT

namespace {

// A Linear [out, in] holding weight (and bias), in the dtype/device of `like`, with the same
// training flag; made without touching the default generator's stream.
std::shared_ptr<nn::Linear> make_linear(const nn::Linear& like, const Tensor& weight, const Tensor& bias) {
  std::shared_ptr<nn::Linear> l;
  {
    GeneratorStateGuard keep_rng;
    l = std::make_shared<nn::Linear>(weight.size(1), weight.size(0), bias.defined());
  }
  l->to(like.weight.dtype());
  l->to(like.weight.device());
  nn::StateDict sd;
  sd.insert("weight", weight);
  if (bias.defined()) sd.insert("bias", bias);
  l->load_state_dict(sd, true);
  l->weight.requires_grad_(like.weight.requires_grad());
  if (l->bias.defined()) l->bias.requires_grad_(like.bias.requires_grad());
  l->train(like.is_training());
  return l;
}

// Per-layer widths equal to the defaults everywhere are dropped (GPT-2's own layout).
void normalise(nn::GPTConfig& c) {
  if (std::all_of(c.layer_heads.begin(), c.layer_heads.end(), [&](int64_t h) { return h == c.n_head; }))
    c.layer_heads.clear();
  if (std::all_of(c.layer_mlp.begin(), c.layer_mlp.end(), [&](int64_t m) { return m == 4 * c.n_embd; }))
    c.layer_mlp.clear();
}

void check_float_linear(const nn::Linear& l, const std::string& what, const char* where) {
  MOX_CHECK(l.weight.defined(), where,
            what + " has no float weight (a quantised Linear): prune before quantising");
}

}  // namespace

nn::GPTConfig prune_heads(nn::GPT& model, double fraction) {
  const char* where = "prune_heads";
  check_fraction(fraction, where);
  nn::GPTConfig c = model.config();
  const int64_t D = c.head_dim();
  // Check everything before anything changes.
  for (size_t l = 0; l < model.blocks.size(); l++) {
    const auto& a = *model.blocks[l]->attn;
    check_float_linear(*a.c_attn, "transformer.h." + std::to_string(l) + ".attn.c_attn", where);
    check_float_linear(*a.c_proj, "transformer.h." + std::to_string(l) + ".attn.c_proj", where);
  }
  c.layer_heads.clear();
  for (size_t l = 0; l < model.blocks.size(); l++) {
    auto& a = *model.blocks[l]->attn;
    const int64_t H = a.n_head, A = H * D, C = a.n_embd;
    const std::vector<double> w_attn = host_values(a.c_attn->weight);  // [3A, C]
    const std::vector<double> w_proj = host_values(a.c_proj->weight);  // [C, A]
    std::vector<double> score(size_t(H), 0.0);
    for (int64_t h = 0; h < H; h++) {
      for (int64_t part = 0; part < 3; part++)
        for (int64_t r = part * A + h * D; r < part * A + (h + 1) * D; r++)
          for (int64_t k = 0; k < C; k++) score[size_t(h)] += std::abs(w_attn[size_t(r * C + k)]);
      for (int64_t o = 0; o < C; o++)
        for (int64_t col = h * D; col < (h + 1) * D; col++) score[size_t(h)] += std::abs(w_proj[size_t(o * A + col)]);
    }
    const std::vector<int64_t> heads = keep_largest(score, keep_count(fraction, H));
    c.layer_heads.push_back(int64_t(heads.size()));
    if (int64_t(heads.size()) == H) continue;
    std::vector<int64_t> cols, rows;  // columns of c_proj; rows of c_attn (q, then k, then v)
    for (int64_t h : heads)
      for (int64_t d = 0; d < D; d++) cols.push_back(h * D + d);
    for (int64_t part = 0; part < 3; part++)
      for (int64_t col : cols) rows.push_back(part * A + col);
    const Tensor b_attn = a.c_attn->bias.defined() ? take(a.c_attn->bias, 0, rows) : Tensor();
    auto c_attn = make_linear(*a.c_attn, take(a.c_attn->weight, 0, rows), b_attn);
    auto c_proj = make_linear(*a.c_proj, take(a.c_proj->weight, 1, cols),
                              a.c_proj->bias.defined() ? a.c_proj->bias.detach().clone() : Tensor());
    a.replace_module("c_attn", c_attn);
    a.replace_module("c_proj", c_proj);
    a.c_attn = c_attn;
    a.c_proj = c_proj;
    a.n_head = int64_t(heads.size());
  }
  normalise(c);
  model.set_config(c);
  return c;
}

nn::GPTConfig prune_gpt_mlp(nn::GPT& model, double fraction) {
  const char* where = "prune_gpt_mlp";
  check_fraction(fraction, where);
  nn::GPTConfig c = model.config();
  for (size_t l = 0; l < model.blocks.size(); l++) {
    const auto& m = *model.blocks[l]->mlp;
    check_float_linear(*m.c_fc, "transformer.h." + std::to_string(l) + ".mlp.c_fc", where);
    check_float_linear(*m.c_proj, "transformer.h." + std::to_string(l) + ".mlp.c_proj", where);
  }
  c.layer_mlp.clear();
  for (size_t l = 0; l < model.blocks.size(); l++) {
    auto& m = *model.blocks[l]->mlp;
    const int64_t M = m.c_fc->out_features, C = m.c_fc->in_features;
    const std::vector<double> w_fc = host_values(m.c_fc->weight);      // [M, C]
    const std::vector<double> w_proj = host_values(m.c_proj->weight);  // [C, M]
    std::vector<double> score(size_t(M), 0.0);
    for (int64_t j = 0; j < M; j++)
      for (int64_t k = 0; k < C; k++) score[size_t(j)] += std::abs(w_fc[size_t(j * C + k)]);
    for (int64_t o = 0; o < C; o++)
      for (int64_t j = 0; j < M; j++) score[size_t(j)] += std::abs(w_proj[size_t(o * M + j)]);
    const std::vector<int64_t> units = keep_largest(score, keep_count(fraction, M));
    c.layer_mlp.push_back(int64_t(units.size()));
    if (int64_t(units.size()) == M) continue;
    auto c_fc = make_linear(*m.c_fc, take(m.c_fc->weight, 0, units),
                            m.c_fc->bias.defined() ? take(m.c_fc->bias, 0, units) : Tensor());
    auto c_proj = make_linear(*m.c_proj, take(m.c_proj->weight, 1, units),
                              m.c_proj->bias.defined() ? m.c_proj->bias.detach().clone() : Tensor());
    m.replace_module("c_fc", c_fc);
    m.replace_module("c_proj", c_proj);
    m.c_fc = c_fc;
    m.c_proj = c_proj;
  }
  normalise(c);
  model.set_config(c);
  return c;
}

}  // namespace mox::compress
