// mox export --model DIR --format safetensors --out DIR2 [--layout hf|mox]: writes a model
// in a form other tools read.
//   GPT folder (model.json or config.json + model.safetensors, nn/models/gpt_io.h):
//     --layout hf (default)  config.json + model.safetensors as transformers'
//                            GPT2LMHeadModel.from_pretrained reads them; a BPE tokenizer is
//                            also written as vocab.json + merges.txt (GPT2Tokenizer's names)
//     --layout mox           model.json + model.safetensors (what load_gpt reads)
//     A tokenizer/ subfolder (or an HF folder's vocab.json + merges.txt) is carried along as
//     tokenizer/.
//   Run folder of `mox train` (config.toml + model.safetensors): the weights as they are
//     (PyTorch state_dict names, checked against the model the config builds), model.json
//     describing the architecture (layers, output shapes, parameter counts, PyTorch repr),
//     and config.toml / preprocess.json / vocab.txt, so the folder describes itself.
//     Only --layout mox exists for these.
// mox export --model DIR --format onnx --out FILE.onnx | DIR2: one ONNX model (opset 17,
// io/onnx_export.h) of a GPT folder or a `mox train` run folder; --out ending in .onnx names
// the file, anything else a folder that gets model.onnx plus what a user needs to feed it
// (preprocess.json / vocab.txt of a run, tokenizer/ of a GPT). The inputs and outputs:
//   run folder   "input" float [batch, ...input_shape] (int64 ids for an Embedding model) ->
//                "output", the model's forward() (probabilities when it ends in Softmax);
//                preprocess.json rides along in the model's metadata ("mox.preprocess")
//   GPT          "input_ids" int64 [batch, sequence <= block_size] -> "logits"
//                [batch, sequence, vocab]
// Quantised runs (quantization.json) are refused; sparse (pruned) runs export as dense.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "mox/compress/sparse.h"
#include "mox/data/text/bpe.h"
#include "mox/data/text/text_tokenizer.h"
#include "mox/io/config.h"
#include "mox/io/file_util.h"
#include "mox/io/onnx_export.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/nn/models/summary.h"
#include "mox/nn/serialize.h"
#include "mox/tensor/error.h"
#include "mox/train/compress.h"

namespace mox::cli {

namespace {

namespace fs = std::filesystem;

struct ExportOptions {
  std::string model_dir, format, out_dir, layout;
};

// Copies `from` over `to` (a file), atomically.
void copy_atomic(const fs::path& from, const fs::path& to) {
  io::write_file_atomic(to.string(), io::read_file(from.string()));
}

// The GPT's tokenizer, if the folder has one, into out/tokenizer/ (checked by loading it);
// for the HF layout a BPE tokenizer also goes to out/vocab.json + out/merges.txt.
// Returns a description for the summary line ("" when there is none).
std::string export_tokenizer(const fs::path& src, const fs::path& out, bool hf, int32_t* eos_id) {
  const fs::path tok_out = out / "tokenizer";
  std::unique_ptr<data::TextTokenizer> tok;
  if (fs::is_directory(src / "tokenizer")) {
    tok = data::load_text_tokenizer((src / "tokenizer").string());
  } else if (fs::exists(src / "vocab.json") && fs::exists(src / "merges.txt")) {
    // An HF folder's GPT-2 tokenizer: the same files as GPT-2's encoder.json + vocab.bpe.
    fs::create_directories(tok_out);
    copy_atomic(src / "vocab.json", tok_out / "encoder.json");
    copy_atomic(src / "merges.txt", tok_out / "vocab.bpe");
    tok = data::load_text_tokenizer(tok_out.string());
  } else {
    return "";
  }
  tok->save(tok_out.string());
  if (hf && tok->kind() == "bpe") {
    copy_atomic(tok_out / "encoder.json", out / "vocab.json");
    copy_atomic(tok_out / "vocab.bpe", out / "merges.txt");
    const int32_t eos = static_cast<const data::BpeTokenizer&>(*tok).token_id("<|endoftext|>");
    if (eos >= 0) *eos_id = eos;
  }
  return tok->kind() + " tokenizer (vocab " + std::to_string(tok->vocab_size()) + ")";
}

int export_gpt(const ExportOptions& o) {
  const std::string layout = o.layout.empty() ? "hf" : o.layout;
  std::shared_ptr<nn::GPT> model = nn::load_gpt(o.model_dir);
  const fs::path out(o.out_dir);
  fs::create_directories(out);
  int32_t eos_id = -1;
  const std::string tokenizer = export_tokenizer(o.model_dir, out, layout == "hf", &eos_id);
  if (layout == "hf") {
    nn::save_gpt_hf(*model, out.string());
    if (eos_id >= 0 && eos_id < model->config().vocab_size) {
      // GPT2Config's default bos/eos (50256) is GPT-2's own <|endoftext|>: name this one's.
      const std::string path = (out / "config.json").string();
      nlohmann::json config = nlohmann::json::parse(io::read_file(path));
      config["bos_token_id"] = eos_id;
      config["eos_token_id"] = eos_id;
      io::write_file_atomic(path, config.dump(2) + "\n");
    }
  } else {
    nn::save_gpt(*model, out.string());
  }
  std::cout << "exported gpt (" << nn::group_thousands(model->num_parameters()) << " parameters"
            << (tokenizer.empty() ? "" : ", " + tokenizer) << ") in the "
            << (layout == "hf" ? "Hugging Face" : "mox") << " layout to " << out.string() << "\n";
  return 0;
}

// A `mox train` run folder: weights as they are, plus the architecture as JSON.
int export_run(const ExportOptions& o) {
  const fs::path src(o.model_dir), out(o.out_dir);
  MOX_CHECK(o.layout.empty() || o.layout == "mox", "--layout " + o.layout,
            "only GPT models have a Hugging Face layout; " + o.model_dir +
                " is a `mox train` run folder (use --layout mox)");
  io::Config config = io::load_config((src / "config.toml").string());
  std::shared_ptr<nn::Sequential> model = nn::build_model(config.model);
  const fs::path weights = src / "model.safetensors";
  MOX_CHECK(fs::exists(weights), weights.string(), "missing: the run has no trained weights");
  nn::load_state_dict(*model, weights.string());  // the weights fit the architecture

  const Shape input_shape = nn::model_input_shape(config.model);
  const nn::ModelSummary summary = nn::summarize(*model, input_shape, config.model.name);
  nlohmann::json layers = nlohmann::json::array();
  for (const nn::SummaryRow& r : summary.rows)
    layers.push_back({{"name", r.name}, {"type", r.type}, {"output_shape", r.output_shape}, {"params", r.params}});
  nlohmann::json parameters = nlohmann::json::object();
  for (const auto& [name, t] : model->state_dict())
    parameters[name] = {{"shape", t.shape()}, {"dtype", dtype_name(t.dtype())}};
  const nlohmann::json description = {
      {"type", "sequential"},
      {"name", config.model.name},
      {"input_shape", input_shape},  // -1: any batch size
      {"layers", layers},
      {"parameters", parameters},
      {"total_params", summary.total_params},
      {"pytorch", model->repr()},
      {"model_config", config.model.table ? config.model.table->toml() : std::string()}};

  fs::create_directories(out);
  copy_atomic(weights, out / "model.safetensors");
  io::write_file_atomic((out / "model.json").string(), description.dump(2) + "\n");
  for (const char* extra : {"config.toml", "preprocess.json", "vocab.txt"})
    if (fs::exists(src / extra)) copy_atomic(src / extra, out / extra);
  std::cout << "exported " << config.model.name << " (" << nn::group_thousands(summary.total_params)
            << " parameters, PyTorch state_dict names) to " << out.string() << "\n";
  return 0;
}

// --format onnx: the model as one .onnx file (see the top of this file).
int export_onnx(const ExportOptions& o) {
  MOX_CHECK(o.layout.empty(), "--layout " + o.layout, "layouts belong to --format safetensors (ONNX has one)");
  const fs::path src(o.model_dir);
  MOX_CHECK(!fs::exists(src / "quantization.json"), o.model_dir,
            "ONNX export of quantised models is not supported; export the float run");
  const bool to_file = fs::path(o.out_dir).extension() == ".onnx";
  const fs::path out_dir = to_file ? fs::absolute(o.out_dir).parent_path() : fs::path(o.out_dir);
  const fs::path file = to_file ? fs::path(o.out_dir) : out_dir / "model.onnx";
  const bool gpt = fs::exists(src / "model.json") || fs::exists(src / "config.json");
  MOX_CHECK(gpt || fs::exists(src / "config.toml"), o.model_dir,
            "not a model folder: expected model.json or config.json (GPT) or config.toml (a `mox train` run)");

  io::OnnxExportOptions options;
  io::OnnxExportInfo info;
  std::string name;
  if (gpt) {
    std::shared_ptr<nn::GPT> model = train::load_gpt_run(o.model_dir);  // dense, or sparse made dense
    model->eval();
    name = "gpt";
    options.graph_name = "gpt";
    options.metadata = {{"mox.model", nn::gpt_config_to_json(model->config()).dump()}};
    fs::create_directories(out_dir);
    info = io::export_onnx_gpt(*model, file.string(), options);
    if (!to_file) {
      int32_t eos_id = -1;
      export_tokenizer(src, out_dir, false, &eos_id);
    }
  } else {
    io::Config config = io::load_config((src / "config.toml").string());
    std::shared_ptr<nn::Sequential> model = nn::build_model(config.model);
    const fs::path weights = src / "model.safetensors";
    MOX_CHECK(fs::exists(weights), weights.string(), "missing: the run has no trained weights");
    compress::load_state_dict_any(*model, weights.string());  // dense, or sparse (mox prune)
    model->eval();
    name = config.model.name;
    options.graph_name = config.model.name;
    if (fs::exists(src / "preprocess.json"))
      options.metadata.push_back({"mox.preprocess", io::read_file((src / "preprocess.json").string())});
    fs::create_directories(out_dir);
    info = io::export_onnx_sequential(*model, nn::model_input_shape(config.model), file.string(), options);
    if (!to_file)
      for (const char* extra : {"preprocess.json", "vocab.txt"})
        if (fs::exists(src / extra)) copy_atomic(src / extra, out_dir / extra);
  }
  std::string ops;
  for (const std::string& op : info.op_types) ops += (ops.empty() ? "" : " ") + op;
  std::cout << "exported " << name << " (" << nn::group_thousands(info.parameters) << " parameters) to "
            << file.string() << ": ONNX opset " << io::kOnnxOpset << ", " << info.nodes << " nodes (" << ops
            << ")\n";
  return 0;
}

int run_export(const ExportOptions& o) {
  MOX_CHECK(o.format == "safetensors" || o.format == "onnx", "--format " + o.format,
            "unknown format (expected safetensors or onnx)");
  MOX_CHECK(o.layout.empty() || o.layout == "hf" || o.layout == "mox", "--layout " + o.layout,
            "unknown layout (expected hf or mox)");
  const fs::path src(o.model_dir);
  MOX_CHECK(fs::is_directory(src), o.model_dir, "not a folder (expected a model folder)");
  MOX_CHECK(!fs::exists(o.out_dir) || !fs::equivalent(src, o.out_dir), o.out_dir,
            "--out must differ from --model");
  if (o.format == "onnx") return export_onnx(o);
  if (fs::exists(src / "model.json") || fs::exists(src / "config.json")) return export_gpt(o);
  if (fs::exists(src / "config.toml")) return export_run(o);
  throw Error(o.model_dir,
              "not a model folder: expected model.json or config.json (GPT) or config.toml (a `mox train` run)");
}

}  // namespace

Command add_export_command(CLI::App& parent) {
  auto o = std::make_shared<ExportOptions>();
  o->format = "safetensors";
  CLI::App* app = parent.add_subcommand("export", "Write a model for other tools (Hugging Face, PyTorch, ONNX)");
  app->add_option("--model", o->model_dir, "model folder: GPT (mox or Hugging Face layout) or a run folder")
      ->required();
  app->add_option("--format", o->format, "safetensors (default) or onnx");
  app->add_option("--out", o->out_dir, "output folder (created when missing); with --format onnx also a .onnx file")
      ->required();
  app->add_option("--layout", o->layout, "hf (default for GPT models) or mox");
  app->footer(
      "Examples:\n  mox export --model runs/gpt --format safetensors --out gpt-hf\n"
      "  mox export --model gpt-hf --format safetensors --out gpt-mox --layout mox\n"
      "  mox export --model runs/cnn --format onnx --out cnn.onnx");
  return {app, [o] { return run_export(*o); }};
}

}  // namespace mox::cli
