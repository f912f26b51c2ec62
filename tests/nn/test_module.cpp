// Module: registration, naming, traversal, modes, state_dict round trips and the errors
// of load_state_dict, dtype conversion.
#include <gtest/gtest.h>

#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;

namespace {

struct Net : Module {
  Net() {
    fc1 = register_module("fc1", std::make_shared<Linear>(4, 8));
    bn = register_module("bn", std::make_shared<BatchNorm1d>(8));
    fc2 = register_module("fc2", std::make_shared<Linear>(8, 2));
    scale = register_parameter("scale", ones({1}));
    step = register_buffer("step", zeros({}, DType::I64), /*persistent=*/false);
  }
  Tensor forward(const Tensor& x) override {
    return mul((*fc2)(relu((*bn)((*fc1)(x)))), scale);
  }
  std::string type_name() const override { return "Net"; }
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<BatchNorm1d> bn;
  Tensor scale, step;
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string load_error(Module& m, const StateDict& sd, bool strict = true) {
  try {
    m.load_state_dict(sd, strict);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Module, NamedParametersBuffersAndModules) {
  Net net;
  EXPECT_EQ(net.named_parameters().keys(),
            (std::vector<std::string>{"scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                                      "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(net.named_parameters(false).keys(), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(net.parameters().size(), 7u);
  EXPECT_EQ(net.num_parameters(), 1 + 40 + 16 + 18);
  EXPECT_EQ(net.named_buffers().keys(),
            (std::vector<std::string>{"step", "bn.running_mean", "bn.running_var",
                                      "bn.num_batches_tracked"}));
  EXPECT_EQ(net.buffers(false).size(), 1u);
  EXPECT_EQ(net.children().size(), 3u);
  std::vector<std::string> names;
  for (auto& [name, m] : net.named_modules()) names.push_back(name + ":" + m->type_name());
  EXPECT_EQ(names, (std::vector<std::string>{":Net", "fc1:Linear", "bn:BatchNorm1d",
                                             "fc2:Linear"}));
  // The handles a layer keeps are the registered tensors.
  EXPECT_TRUE(net.named_parameters().at("fc1.weight").same(net.fc1->weight));
}

TEST(Module, StateDictHasPersistentBuffersInPyTorchOrder) {
  Net net;
  StateDict sd = net.state_dict();
  EXPECT_EQ(sd.keys(), (std::vector<std::string>{"scale", "fc1.weight", "fc1.bias", "bn.weight",
                                                 "bn.bias", "bn.running_mean", "bn.running_var",
                                                 "bn.num_batches_tracked", "fc2.weight",
                                                 "fc2.bias"}));
  // Detached views of the live tensors: same storage, no grad.
  EXPECT_FALSE(sd.at("fc1.weight").requires_grad());
  EXPECT_EQ(sd.at("fc1.weight").raw_data(), net.fc1->weight.raw_data());
}

TEST(Module, RegistrationErrors) {
  Net net;
  EXPECT_THROW(net.register_parameter("scale", ones({1})), Error);
  EXPECT_THROW(net.register_buffer("fc1", ones({1})), Error);
  EXPECT_THROW(net.register_parameter("a.b", ones({1})), Error);
  EXPECT_THROW(net.register_parameter("", ones({1})), Error);
  EXPECT_THROW(net.register_parameter("u", Tensor()), Error);
  EXPECT_THROW(net.register_parameter("i", zeros({2}, DType::I64)), Error);  // grad needs float
  EXPECT_THROW(net.register_module("bn", std::make_shared<ReLU>()), Error);
  EXPECT_THROW(net.register_module("null", std::shared_ptr<Module>()), Error);
  // A tensor with history becomes a leaf parameter.
  Tensor w = mul(ones({2}, TensorOptions(DType::F32, kCPU, true)), 2.0);
  Tensor p = net.register_parameter("w", w);
  EXPECT_TRUE(p.is_leaf());
  EXPECT_TRUE(p.requires_grad());
}

TEST(Module, StateDictRoundTrip) {
  manual_seed(1);
  Net a;
  Tensor x = randn({5, 4});
  a(x);  // one training step moves the running statistics
  a.eval();
  Net b;
  b.eval();
  EXPECT_FALSE(allclose(a(x), b(x)));
  LoadResult r = b.load_state_dict(a.state_dict());
  EXPECT_TRUE(r.missing_keys.empty());
  EXPECT_TRUE(r.unexpected_keys.empty());
  EXPECT_TRUE(allclose(a(x), b(x), 0, 0));
  EXPECT_EQ(b.bn->num_batches_tracked.item<int64_t>(), 1);
  // Values were copied: b does not share a's storage.
  EXPECT_NE(a.fc1->weight.raw_data(), b.fc1->weight.raw_data());
  // b's handles were written in place and still require grad.
  EXPECT_TRUE(b.fc1->weight.requires_grad());
}

TEST(Module, LoadStateDictMissingAndUnexpectedKeys) {
  Net a, b;
  StateDict sd = a.state_dict();
  sd.erase("fc2.bias");
  sd.insert("fc3.weight", zeros({2}));
  std::string msg = load_error(b, sd);
  EXPECT_TRUE(contains(msg, "Net.load_state_dict")) << msg;
  EXPECT_TRUE(contains(msg, "missing keys: 'fc2.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "unexpected keys: 'fc3.weight'")) << msg;
  // Nothing was written by the failed load.
  EXPECT_FALSE(allclose(a.fc1->weight, b.fc1->weight));
  // Non-strict loads what matches and reports the rest.
  LoadResult r = b.load_state_dict(sd, false);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"fc2.bias"});
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"fc3.weight"});
  EXPECT_TRUE(allclose(a.fc1->weight, b.fc1->weight, 0, 0));
}

TEST(Module, LoadStateDictShapeAndDtypeMismatch) {
  Net b;
  Tensor before = b.fc2->weight.clone();
  StateDict sd = Net().state_dict();
  sd["fc1.weight"] = zeros({8, 5});
  std::string msg = load_error(b, sd);
  EXPECT_TRUE(contains(msg, "'fc1.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "[8, 5]")) << msg;
  EXPECT_TRUE(contains(msg, "[8, 4]")) << msg;
  // Shape errors are raised even when not strict, and nothing is written.
  EXPECT_THROW(b.load_state_dict(sd, false), Error);
  EXPECT_TRUE(allclose(b.fc2->weight, before, 0, 0));

  StateDict sd2 = Net().state_dict();
  sd2["bn.running_var"] = ones({8}, DType::F64);
  msg = load_error(b, sd2);
  EXPECT_TRUE(contains(msg, "'bn.running_var'")) << msg;
  EXPECT_TRUE(contains(msg, "f64")) << msg;
  EXPECT_TRUE(contains(msg, "f32")) << msg;

  StateDict sd3 = Net().state_dict();
  sd3["scale"] = Tensor();
  EXPECT_THROW(b.load_state_dict(sd3), Error);
}

TEST(Module, ToDtypeConvertsInPlaceKeepingHandles) {
  Net net;
  Tensor w = net.fc1->weight;  // a handle kept outside
  std::vector<float> v = w.to_vector<float>();
  net(randn({3, 4})).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  net.to(DType::F64);
  EXPECT_EQ(w.dtype(), DType::F64);
  EXPECT_EQ(net.fc1->weight.dtype(), DType::F64);
  EXPECT_EQ(w.grad().dtype(), DType::F64);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_EQ(net.bn->running_mean.dtype(), DType::F64);
  EXPECT_EQ(net.bn->num_batches_tracked.dtype(), DType::I64);  // integer buffers stay
  EXPECT_EQ(net.step.dtype(), DType::I64);
  std::vector<double> v64 = w.to_vector<double>();
  for (size_t i = 0; i < v.size(); i++) EXPECT_EQ(double(v[i]), v64[i]);
  Tensor y = net(randn({3, 4}, nullptr, DType::F64));
  EXPECT_EQ(y.dtype(), DType::F64);
  EXPECT_THROW(net.to(DType::I32), Error);
}

TEST(Module, TrainEvalPropagatesToChildren) {
  Net net;
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.bn->is_training());
  net.train();
  EXPECT_TRUE(net.fc2->is_training());
  // A module added to an eval-mode Sequential follows its mode.
  Sequential s;
  s.eval();
  s.push_back(std::make_shared<Dropout>());
  EXPECT_FALSE(s[0]->is_training());
}

TEST(Module, ZeroGradAndFreeze) {
  Net net;
  net(randn({3, 4})).sum().backward();
  for (const Tensor& p : net.parameters()) EXPECT_TRUE(p.grad().defined());
  net.zero_grad();
  for (const Tensor& p : net.parameters()) EXPECT_FALSE(p.grad().defined());
  net.fc1->requires_grad_(false);
  EXPECT_EQ(net.num_parameters(true), net.num_parameters() - 40);
  net(randn({3, 4})).sum().backward();
  EXPECT_FALSE(net.fc1->weight.grad().defined());
  EXPECT_TRUE(net.fc2->weight.grad().defined());
}

TEST(Module, TiedParametersAppearOnceInParameters) {
  // A weight shared by two names (like GPT's tied embedding and output head).
  struct TiedByRegistration : Module {
    TiedByRegistration() {
      auto a = register_module("a", std::make_shared<Linear>(3, 3));
      Tensor w = register_parameter("w", a->weight);
      (void)w;
    }
  };
  TiedByRegistration t;
  EXPECT_EQ(t.parameters().size(), 2u);  // "w" (== a.weight) and a.bias
  EXPECT_EQ(t.named_parameters().keys(), (std::vector<std::string>{"w", "a.bias"}));
  EXPECT_EQ(t.num_parameters(), 12);
  EXPECT_EQ(t.state_dict().keys(), (std::vector<std::string>{"w", "a.weight", "a.bias"}));
  TiedByRegistration u;
  u.load_state_dict(t.state_dict());
  EXPECT_TRUE(allclose(u.named_parameters().at("w"), t.named_parameters().at("w"), 0, 0));
}

TEST(Module, ReplaceModule) {
  Net net;
  net.eval();
  net.replace_module("bn", std::make_shared<Identity>());
  EXPECT_EQ(net.named_children().at("bn")->type_name(), "Identity");
  EXPECT_FALSE(net.named_children().at("bn")->is_training());
  EXPECT_EQ(net.state_dict().size(), 5u);
  EXPECT_THROW(net.replace_module("nope", std::make_shared<Identity>()), Error);
}

TEST(Module, DefaultsThrowAndReprNests) {
  Module m;
  EXPECT_THROW(m.forward(zeros({1})), Error);
  EXPECT_THROW(m.output_shape({1}), Error);
  Net net;
  EXPECT_EQ(net.repr(),
            "Net(\n"
            "  (fc1): Linear(in_features=4, out_features=8, bias=True)\n"
            "  (bn): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True)\n"
            "  (fc2): Linear(in_features=8, out_features=2, bias=True)\n"
            ")");
  Sequential outer({std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
                        std::make_shared<ReLU>()}),
                    std::make_shared<Tanh>()});
  EXPECT_EQ(outer.repr(),
            "Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n  (1): Tanh()\n)");
}

TEST(Module, ApplyVisitsEveryModule) {
  Net net;
  int count = 0;
  net.apply([&](Module&) { count++; });
  EXPECT_EQ(count, 4);
}

TEST(OrderedDict, KeepsInsertionOrderAndRejectsDuplicates) {
  OrderedDict<int> d;
  d.insert("b", 1);
  d.insert("a", 2);
  d["c"] = 3;
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_THROW(d.insert("a", 5), Error);
  EXPECT_THROW(d.at("zz"), Error);
  EXPECT_TRUE(d.erase("a"));
  EXPECT_FALSE(d.erase("a"));
  EXPECT_EQ(d.at("c"), 3);
  EXPECT_EQ(d.values(), (std::vector<int>{1, 3}));
  // Conversions to and from the std::map / vector-of-pairs that io/ uses.
  std::map<std::string, int> m = d.to_map();
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("c"), 3);
  OrderedDict<int> from_map(m);
  EXPECT_EQ(from_map.keys(), (std::vector<std::string>{"b", "c"}));
  std::vector<std::pair<std::string, int>> pairs{{"z", 1}, {"y", 2}};
  EXPECT_EQ(OrderedDict<int>(pairs).keys(), (std::vector<std::string>{"z", "y"}));
  EXPECT_THROW(OrderedDict<int>(std::vector<std::pair<std::string, int>>{{"a", 1}, {"a", 2}}),
               Error);
}

TEST(Module, LoadsAStateDictBuiltFromAStdMap) {
  Net a, b;
  StateDict sd(a.state_dict().to_map());  // sorted keys: order does not matter for loading
  b.load_state_dict(sd);
  EXPECT_TRUE(allclose(a.fc2->weight, b.fc2->weight, 0, 0));
}

}  // namespace
