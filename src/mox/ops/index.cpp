// Indexing ops with autograd: index_select / index_add (along one dim with a 1-D index),
// gather / scatter_add (PyTorch semantics), embedding lookup and one_hot.
// Backward pairs: index_select <-> index_add, gather <-> scatter_add.
#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

Tensor plain(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

// The index as contiguous i64 (integer dtypes only).
Tensor as_index(const Tensor& index, const char* op) {
  MOX_CHECK(index.defined(), op, "index is undefined");
  if (!is_integral(index.dtype()))
    throw Error(op, std::string("index must be an integer tensor, got ") + index.desc());
  return plain(index).to(DType::I64).contiguous();
}

// A 1-D index (a 0-D one counts as one element).
Tensor as_index_1d(const Tensor& index, const char* op) {
  if (index.dim() > 1)
    throw Error(op, "index must be 1-D, got " + index.desc());
  return as_index(index, op).reshape({index.numel()});
}

void check_src_dtype(const Tensor& x, const Tensor& src, const char* op) {
  MOX_CHECK(src.defined(), op, "source is undefined");
  if (src.dtype() != x.dtype())
    throw Error(op, "source " + src.desc() + " must have the dtype of " + x.desc());
}

// index_add into a zero tensor of `shape`: the backward of index_select.
Tensor index_add_zeros(const Shape& shape, int64_t dim, const Tensor& idx, const Tensor& g) {
  Tensor out = zeros(shape, TensorOptions(g.dtype(), g.device()));
  if (out.dim() == 0) {
    backend_for(g).index_add(out.reshape({1}), 0, idx, plain(g).reshape({idx.numel()}));
    return out;
  }
  backend_for(g).index_add(out, dim, idx, plain(g));
  return out;
}

Tensor index_select_raw(const Tensor& x, int64_t dim, const Tensor& idx) {
  Shape s = x.shape();
  if (s.empty()) s = {1};
  s[dim] = idx.numel();
  Tensor out = empty(s, TensorOptions(x.dtype(), x.device()));
  Tensor xc = plain(x);
  if (x.dim() == 0) xc = xc.reshape({1});
  backend_for(x).index_select(xc, dim, idx, out);
  return x.dim() == 0 ? out.reshape({}) : out;
}

}  // namespace

// out = x with dim `dim` replaced by x's slices at index (1-D)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  MOX_CHECK(x.defined(), op, "input is undefined");
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), op);
  Tensor idx = as_index_1d(index, op);
  if (x.dim() == 0 && idx.numel() != 1)
    throw Error(op, "a 0-D input takes exactly one index, got " + index.desc());
  Tensor out = index_select_raw(x, d, idx);
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [in_shape, d, idx](const Tensor& g) -> std::vector<Tensor> {
      return {index_add_zeros(in_shape, d, idx, g)};
    });
  }
  return out;
}

// out = x with src's slices added at index along dim
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "index_add";
  MOX_CHECK(x.defined(), op, "input is undefined");
  check_src_dtype(x, src, op);
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), op);
  Tensor idx = as_index_1d(index, op);
  Shape expect = x.shape();
  if (expect.empty()) expect = {1};
  expect[d] = idx.numel();
  Shape src_shape = src.dim() == 0 ? Shape{1} : src.shape();
  if (src_shape != expect)
    throw Error(op, "source " + src.desc() + " must have shape " + shape_str(expect) +
                        " (input " + x.desc() + " with dim " + std::to_string(d) + " of size " +
                        std::to_string(idx.numel()) + ")");
  Tensor out = x.detach().clone();
  Tensor o = out.dim() == 0 ? out.reshape({1}) : out;
  backend_for(x).index_add(o, d, idx, plain(src).reshape(expect));
  if (any_requires_grad({&x, &src})) {
    Shape ss = src.shape();
    bool ns = src.requires_grad();
    record(out, op, {x, src}, [d, idx, ns, ss](const Tensor& g) -> std::vector<Tensor> {
      Tensor gs;
      if (ns) {
        Tensor gg = g.dim() == 0 ? g.reshape({1}) : g;
        gs = index_select_raw(gg, d, idx).reshape(ss);
      }
      return {g, gs};
    });
  }
  return out;
}

// out[i][j][k] = x[i][index[i][j][k]][k] (dim=1); out shaped like index
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  MOX_CHECK(x.defined(), op, "input is undefined");
  Tensor idx = as_index(index, op);
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), op);
  Tensor out = empty(idx.shape(), TensorOptions(x.dtype(), x.device()));
  backend_for(x).gather(x.detach(), d, idx, out);
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [in_shape, d, idx](const Tensor& g) -> std::vector<Tensor> {
      Tensor gx = zeros(in_shape, TensorOptions(g.dtype(), g.device()));
      backend_for(g).scatter_add(gx, d, idx, g);
      return {gx};
    });
  }
  return out;
}

// out = x; out[i][index[i][j][k]][k] += src[i][j][k] (dim=1)
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  MOX_CHECK(x.defined(), op, "input is undefined");
  check_src_dtype(x, src, op);
  Tensor idx = as_index(index, op);
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), op);
  Tensor out = x.detach().clone();
  backend_for(x).scatter_add(out, d, idx, src.detach());
  if (any_requires_grad({&x, &src})) {
    Shape ss = src.shape();
    bool ns = src.requires_grad();
    record(out, op, {x, src}, [d, idx, ns, ss](const Tensor& g) -> std::vector<Tensor> {
      Tensor gs;
      if (ns) {
        // src positions outside index's extent received nothing: their gradient is zero.
        Tensor picked = empty(idx.shape(), TensorOptions(g.dtype(), g.device()));
        backend_for(g).gather(g, d, idx, picked);
        if (picked.shape() == ss) {
          gs = picked;
        } else {
          gs = zeros(ss, TensorOptions(g.dtype(), g.device()));
          Tensor view = gs;
          for (int64_t k = 0; k < picked.dim(); k++) view = view.narrow(k, 0, picked.size(k));
          view.copy_(picked);
        }
      }
      return {g, gs};
    });
  }
  return out;
}

// weight [V, D], indices (any shape, integer) -> [*indices.shape, D]
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  const char* op = "embedding";
  MOX_CHECK(weight.defined(), op, "weight is undefined");
  if (weight.dim() != 2) throw Error(op, "weight must be [num_embeddings, dim], got " + weight.desc());
  const int64_t V = weight.size(0), D = weight.size(1);
  if (padding_idx >= V)
    throw Error(op, "padding_idx " + std::to_string(padding_idx) + " is out of range for " +
                        std::to_string(V) + " embeddings");
  Tensor idx = as_index(indices, op).reshape({indices.numel()});
  Shape os = indices.shape();
  os.push_back(D);
  Tensor rows;
  try {
    rows = index_select_raw(weight, 0, idx);
  } catch (const Error& e) {
    throw Error(op, e.detail() + " (" + std::to_string(V) + " embeddings)");
  }
  Tensor out = rows.view(os);
  if (any_requires_grad({&weight})) {
    Shape ws = weight.shape();
    record(out, op, {weight}, [ws, idx, padding_idx, D](const Tensor& g) -> std::vector<Tensor> {
      Tensor g2 = plain(g).reshape({idx.numel(), D});
      if (padding_idx >= 0) {
        // Lookups of the padding row contribute no gradient.
        Tensor keep = ne(idx, double(padding_idx)).to(g.dtype()).reshape({idx.numel(), 1});
        g2 = mul(g2, keep);
      }
      return {index_add_zeros(ws, 0, idx, g2)};
    });
  }
  return out;
}

// indices (any shape) -> [*indices.shape, num_classes] with 1 at each label
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  const char* op = "one_hot";
  Tensor idx = as_index(indices, op);
  std::vector<int64_t> v = idx.to_vector<int64_t>();
  int64_t max_label = -1;
  for (int64_t i : v) {
    if (i < 0) throw Error(op, "labels must be non-negative, got " + std::to_string(i));
    max_label = std::max(max_label, i);
  }
  if (num_classes < 0) {  // infer like PyTorch: max label + 1
    if (v.empty()) throw Error(op, "cannot infer num_classes from an empty tensor");
    num_classes = max_label + 1;
  }
  if (max_label >= num_classes)
    throw Error(op, "label " + std::to_string(max_label) + " is out of range for " +
                        std::to_string(num_classes) + " classes");
  const int64_t n = idx.numel();
  Shape os = indices.shape();
  os.push_back(num_classes);
  Tensor out = zeros({n, num_classes}, TensorOptions(dtype, indices.device()));
  if (n > 0 && num_classes > 0) {
    Tensor ones_src = ones({n, 1}, TensorOptions(dtype, indices.device()));
    backend_for(out).scatter_add(out, 1, idx.reshape({n, 1}), ones_src);
  }
  return out.view(os);
}

}  // namespace mox
