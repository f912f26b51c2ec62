#pragma once
// Structured pruning: whole units are removed, so the result is a smaller DENSE model that
// runs with the ordinary layers (no masks, no sparse kernels).
//
// Sequential models built from a run config (nn/models/build_model.h): prune_structured
// removes a fraction of the output units of every prunable Conv2d (filters) and Linear (output
// features). A unit's score is the L1 norm of its weights in the original model (the Conv2d
// filter weight[o] or the Linear row weight[o]; the bias is not counted); per layer the
// keep = max(1, round((1 - fraction) * units)) units with the largest scores stay (ties: the
// lower index first), in their original order. What follows the layer, up to and including
// the next weight layer, is rewritten:
//   - element-wise activations (ReLU, LeakyReLU, ELU, SELU, GELU, Sigmoid, Tanh, Softplus,
//     SiLU), Identity, Dropout: unchanged;
//   - MaxPool2d / AvgPool2d (per channel): unchanged;
//   - BatchNorm1d / BatchNorm2d over the units (dim 1): weight, bias, running_mean and
//     running_var keep the kept channels (num_batches_tracked is copied);
//   - Flatten: the units' dim is merged with its neighbours; a flattened feature index is
//     (outer * units + u) * inner + r, so each removed channel removes its block of `inner`
//     features (H * W for Flatten after a Conv2d), computed from the layers' output_shape of
//     the config's input_shape;
//   - GlobalAveragePooling1D ([N, T, C] -> [N, C], units in C): unchanged;
//   - the next weight layer: Linear (input features over the last dim: weight columns),
//     Conv2d with groups = 1 (input channels: weight[:, c]), or RNN / LSTM / GRU (input
//     features over the last dim: the columns of weight_ih_l0 and weight_ih_l0_reverse).
// A layer is prunable only when such a consumer is reached through those layers alone, so
// these make the layer before them UNPRUNABLE (left as is): Softmax / LogSoftmax, LayerNorm
// (they mix the units), Embedding, LastTimeStep, a pooling/BatchNorm not over the units' dim,
// a Conv2d with groups > 1 (as producer or consumer), a layer whose weight is not a plain
// tensor (quantised Linears), and the end of the model: the final weight layer, whose outputs
// are the model's outputs, is never pruned. Recurrent layers, Embedding, LayerNorm are never
// pruned themselves (only Conv2d and Linear are).
//
// The pruned model is rebuilt from the rewritten config (nn::build_model, the default
// generator's state saved and restored around it, so calling this draws no random numbers),
// converted to the original's dtype and device, and filled with the kept weights. config_text
// is the run's config text with the pruned layers' size key (out_features / units,
// out_channels / filters, whichever the layer table used) set to the kept count and an
// explicitly given input size of a rewritten follower (num_features, in_features,
// in_channels, input_size) set to match, written by io::apply_overrides ("model.layers[i].key
// = value"; comments are not kept). nn::build_model(parse_config(config_text).model) builds a
// model of exactly the returned one's shapes.
//
// GPT (nn/models/gpt.h), in place: prune_heads removes attention heads (the per-layer
// GPTConfig::layer_heads), prune_gpt_mlp removes MLP hidden units (GPTConfig::layer_mlp).
// A head h of layer l (head size D = n_embd / n_head, attention width A) scores
//   sum |c_attn.weight[r, :]| over its q, k, v rows r in {h*D..h*D+D-1} + {A, 2A} offsets
//   + sum |c_proj.weight[:, h*D .. h*D+D-1]|
// and an MLP unit j scores sum |c_fc.weight[j, :]| + sum |c_proj.weight[:, j]| (biases not
// counted). Per layer keep = max(1, round((1 - fraction) * count)) with the largest scores
// (ties: lower index first); c_attn / c_fc rows (and bias entries) and c_proj input columns are
// kept, c_proj's bias is unchanged. The narrowed Linears replace the old ones (same dtype and
// device); the GPT's config is updated (GPT::set_config) and returned: save_gpt writes it into
// model.json, load_gpt rebuilds the same model. A per-layer list whose entries all equal the
// default (n_head; 4 * n_embd) is left empty. Pruning again narrows the current widths.
// round() is std::llround: halves go away from zero (keep round(2.5) = 3).
//
// Every error is a mox::Error: a fraction outside (0, 1), a skip name that is not a layer of
// the model, a config whose layers do not build the given model, a GPT Linear without a float
// weight (prune before quantising).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mox/io/config.h"
#include "mox/nn/layers/sequential.h"
#include "mox/nn/models/gpt.h"

namespace mox::compress {

struct StructuredPruneOptions {
  double fraction = 0.5;          // of each prunable layer's units removed, in (0, 1)
  std::vector<std::string> skip;  // layer names (Sequential indices "0", "3") left alone
};

struct StructuredPruneResult {
  std::shared_ptr<nn::Sequential> model;  // the smaller model with the kept weights copied
  std::string config_text;                // config.toml text describing it
  // Every Conv2d and Linear of the model in order: name -> (units before, after); equal
  // counts for the layers left alone (skipped, unprunable, the output layer).
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> layers;
  int64_t params_before = 0, params_after = 0;
};

// model: built from config (nn::build_model(config.model)), with any weights; config.text must
// hold the TOML text it was parsed from. The model is not changed. The result is in the
// original's training/eval mode.
StructuredPruneResult prune_structured(const nn::Sequential& model, const io::Config& config,
                                       const StructuredPruneOptions& options);

// Indices of the `keep` largest scores, ascending (ties: the lower index wins). Exposed for
// tests and tools.
std::vector<int64_t> keep_largest(const std::vector<double>& scores, int64_t keep);

// Keeps max(1, round((1 - fraction) * heads)) of each layer's attention heads and
// returns the GPT's new config.
nn::GPTConfig prune_heads(nn::GPT& model, double fraction);

// Keeps max(1, round((1 - fraction) * units)) of each layer's MLP hidden units and
// returns the GPT's new config.
nn::GPTConfig prune_gpt_mlp(nn::GPT& model, double fraction);

}  // namespace mox::compress
