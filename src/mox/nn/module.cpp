#include "mox/nn/module.h"

#include <algorithm>
#include <unordered_set>

#include "mox/autograd/node.h"

namespace mox::nn {

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void Module::check_new_name(const std::string& name, const char* what) const {
  std::string where = type_name() + "." + what;
  MOX_CHECK(!name.empty(), where, "name must not be empty");
  MOX_CHECK(name.find('.') == std::string::npos, where,
            "name '" + name + "' must not contain '.' (dots separate nested modules)");
  MOX_CHECK(!params_.contains(name) && !buffers_.contains(name) && !children_.contains(name),
            where, "'" + name + "' is already registered in this " + type_name());
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "register_parameter");
  MOX_CHECK(t.defined(), type_name() + ".register_parameter",
            "parameter '" + name + "' is an undefined tensor");
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(requires_grad);
  params_.insert(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name, "register_buffer");
  MOX_CHECK(t.defined(), type_name() + ".register_buffer",
            "buffer '" + name + "' is an undefined tensor");
  if (!t.is_leaf() || t.requires_grad()) t = t.detach();
  buffers_.insert(name, t);
  if (!persistent) non_persistent_.push_back(name);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name, "register_module");
  MOX_CHECK(m != nullptr, type_name() + ".register_module", "module '" + name + "' is null");
  children_.insert(name, std::move(m));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  MOX_CHECK(m != nullptr, type_name() + ".replace_module", "module '" + name + "' is null");
  std::shared_ptr<Module>* slot = children_.find(name);
  MOX_CHECK(slot != nullptr, type_name() + ".replace_module",
            "no child module named '" + name + "'");
  m->train(training_);
  *slot = std::move(m);
}

// ---------- traversal ----------

void Module::collect_params(OrderedDict<Tensor>& out, const std::string& prefix,
                            bool recurse) const {
  for (const auto& [name, t] : params_) out.insert(join(prefix, name), t);
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect_params(out, join(prefix, name), true);
}

void Module::collect_buffers(OrderedDict<Tensor>& out, const std::string& prefix, bool recurse,
                             bool persistent_only) const {
  for (const auto& [name, t] : buffers_) {
    bool persistent = std::find(non_persistent_.begin(), non_persistent_.end(), name) ==
                      non_persistent_.end();
    if (persistent || !persistent_only) out.insert(join(prefix, name), t);
  }
  if (!recurse) return;
  for (const auto& [name, child] : children_)
    child->collect_buffers(out, join(prefix, name), true, persistent_only);
}

// Shared (tied) tensors appear once, under their first name, as in PyTorch: an optimiser
// must not update a tied weight twice per step.
static OrderedDict<Tensor> dedupe(const OrderedDict<Tensor>& all) {
  OrderedDict<Tensor> out;
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& [name, t] : all)
    if (seen.insert(t.impl()).second) out.insert(name, t);
  return out;
}

OrderedDict<Tensor> Module::named_parameters(bool recurse) const {
  OrderedDict<Tensor> all;
  collect_params(all, "", recurse);
  return dedupe(all);
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  return named_parameters(recurse).values();
}

OrderedDict<Tensor> Module::named_buffers(bool recurse) const {
  OrderedDict<Tensor> all;
  collect_buffers(all, "", recurse, false);
  return dedupe(all);
}

std::vector<Tensor> Module::buffers(bool recurse) const { return named_buffers(recurse).values(); }

std::vector<std::shared_ptr<Module>> Module::children() const { return children_.values(); }

void Module::collect_named(std::vector<std::pair<std::string, Module*>>& out,
                           const std::string& prefix) {
  out.emplace_back(prefix, this);
  for (const auto& [name, child] : children_) child->collect_named(out, join(prefix, name));
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  collect_named(out, "");
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (const auto& [name, child] : children_) child->apply(fn);
}

// ---------- modes and gradients ----------

void Module::train(bool on) {
  training_ = on;
  for (const auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.zero_grad();
}

void Module::requires_grad_(bool on) {
  for (Tensor& p : parameters()) p.requires_grad_(on);
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const Tensor& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// ---------- state ----------

// Parameters, then persistent buffers, then children: PyTorch's state_dict order.
void Module::collect_state(StateDict& out, const std::string& prefix) const {
  for (const auto& [name, t] : params_) out.insert(join(prefix, name), t);
  for (const auto& [name, t] : buffers_)
    if (std::find(non_persistent_.begin(), non_persistent_.end(), name) == non_persistent_.end())
      out.insert(join(prefix, name), t);
  for (const auto& [name, child] : children_) child->collect_state(out, join(prefix, name));
}

StateDict Module::state_dict() const {
  StateDict live, out;
  collect_state(live, "");
  for (const auto& [key, t] : live) out.insert(key, t.detach());
  return out;
}

static std::string key_list(const std::vector<std::string>& keys) {
  std::string s;
  size_t shown = std::min<size_t>(keys.size(), 10);
  for (size_t i = 0; i < shown; i++) s += (i ? ", " : "") + ("'" + keys[i] + "'");
  if (keys.size() > shown) s += ", ... (" + std::to_string(keys.size() - shown) + " more)";
  return s;
}

LoadResult Module::load_state_dict(const StateDict& sd, bool strict) {
  // The live tensors (not detached), so that copies bump their versions.
  StateDict own;
  collect_state(own, "");

  LoadResult result;
  std::vector<std::string> mismatches;
  for (const auto& [key, dst] : own) {
    const Tensor* src = sd.find(key);
    if (!src) {
      result.missing_keys.push_back(key);
      continue;
    }
    if (!src->defined())
      mismatches.push_back("'" + key + "' is an undefined tensor in the state dict");
    else if (src->shape() != dst.shape())
      mismatches.push_back("'" + key + "' has shape " + shape_str(src->shape()) +
                           " in the state dict but " + shape_str(dst.shape()) + " in the model");
    else if (src->dtype() != dst.dtype())
      mismatches.push_back("'" + key + "' has dtype " + dtype_name(src->dtype()) +
                           " in the state dict but " + dtype_name(dst.dtype()) +
                           " in the model (convert the model with to(dtype) first)");
  }
  for (const auto& [key, src] : sd)
    if (!own.contains(key)) result.unexpected_keys.push_back(key);

  std::string where = type_name() + ".load_state_dict";
  if (!mismatches.empty()) {
    std::string msg;
    for (size_t i = 0; i < mismatches.size(); i++) msg += (i ? "; " : "") + mismatches[i];
    throw Error(where, msg);
  }
  if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
    std::string msg;
    if (!result.missing_keys.empty()) msg += "missing keys: " + key_list(result.missing_keys);
    if (!result.unexpected_keys.empty())
      msg += std::string(msg.empty() ? "" : "; ") +
             "unexpected keys: " + key_list(result.unexpected_keys);
    throw Error(where, msg);
  }

  NoGradGuard ng;
  for (auto& [key, dst] : own) {
    const Tensor* src = sd.find(key);
    if (src && !src->same(dst)) dst.copy_(*src);
  }
  return result;
}

// Points t's impl at `src`'s data (so every handle to t sees the conversion) and converts
// its gradient the same way.
static void retarget(const Tensor& t, const Tensor& src, DType grad_dtype, Device grad_device) {
  TensorImpl* d = t.impl();
  const TensorImpl* s = src.impl();
  d->storage = s->storage;
  d->shape = s->shape;
  d->strides = s->strides;
  d->offset = s->offset;
  d->dtype = s->dtype;
  d->version++;
  if (d->grad) d->grad = Tensor(d->grad).to(grad_dtype).to(grad_device).impl_ptr();
}

Module& Module::to(DType dtype) {
  MOX_CHECK(is_floating(dtype), type_name() + ".to",
            std::string("modules convert to floating dtypes only, got ") + dtype_name(dtype));
  NoGradGuard ng;
  std::unordered_set<const TensorImpl*> done;
  auto convert = [&](const Tensor& t) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype || !done.insert(t.impl()).second) return;
    retarget(t, t.detach().to(dtype), dtype, t.device());
  };
  apply([&](Module& m) {
    for (auto& [name, t] : m.params_) convert(t);
    for (auto& [name, t] : m.buffers_) convert(t);
  });
  return *this;
}

Module& Module::to(Device device) {
  NoGradGuard ng;
  std::unordered_set<const TensorImpl*> done;
  auto move = [&](const Tensor& t) {
    if (t.device() == device || !done.insert(t.impl()).second) return;
    retarget(t, t.detach().to(device), t.dtype(), device);
  };
  apply([&](Module& m) {
    for (auto& [name, t] : m.params_) move(t);
    for (auto& [name, t] : m.buffers_) move(t);
  });
  return *this;
}

// ---------- computation and printing ----------

Tensor Module::forward(const Tensor& x) {
  throw Error(type_name(), "forward(Tensor) is not defined for this module");
}

Shape Module::output_shape(const Shape& input) const {
  throw Error(type_name(), "output_shape is not defined for this module (input " +
                               shape_str(input) + ")");
}

std::string Module::repr() const {
  std::string extra = extra_repr();
  if (children_.empty()) return type_name() + "(" + extra + ")";
  std::string s = type_name() + "(\n";
  auto indent = [](const std::string& text) {
    std::string out;
    for (char c : text) {
      out += c;
      if (c == '\n') out += "  ";
    }
    return out;
  };
  if (!extra.empty()) s += "  " + indent(extra) + "\n";
  for (const auto& [name, child] : children_)
    s += "  (" + name + "): " + indent(child->repr()) + "\n";
  return s + ")";
}

}  // namespace mox::nn
