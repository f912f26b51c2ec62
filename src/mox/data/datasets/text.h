#pragma once
// Labelled text corpora for classification, loaded as raw strings (tokenize + Vocab turn
// them into ids; make_text_dataset stacks those into tensors):
// - load_text_folder: the IMDB layout, root/<class>/*.txt, one example per file.
// - load_text_tsv: a tab-separated file with a header row; text and label columns by name.
// - load_fortunes: Debian fortune files, each file one class, entries separated by "%".
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/data/text/vocab.h"

namespace mox::data {

struct TextCorpus {
  std::vector<std::string> texts;
  std::vector<int64_t> labels;            // labels[i] indexes class_names
  std::vector<std::string> class_names;   // sorted by name
};

// root/<class>/*.txt; classes are the sub-folders, sorted by name; files are read in name
// order so the example order is reproducible. Pass root/train for the aclImdb layout
// (its "unsup" folder is a class like any other; pass a root without it).
TextCorpus load_text_folder(const std::string& root);

// Header row names the columns; each later non-blank line is one example. Labels are
// mapped to 0..K-1 in sorted order. Fields cannot contain tabs or newlines (IANA TSV).
TextCorpus load_text_tsv(const std::string& path, const std::string& text_column,
                         const std::string& label_column);

// dir/<category> for each category (classes in sorted order). Entries are separated by
// lines holding only "%"; empty entries are skipped.
TextCorpus load_fortunes(const std::string& dir, const std::vector<std::string>& categories);

// Tokenizes and encodes each text to exactly `length` ids -> inputs i64 [N, length],
// targets i64 [N].
std::shared_ptr<TensorDataset> make_text_dataset(const std::vector<std::string>& texts,
                                                 const std::vector<int64_t>& labels,
                                                 const Vocab& vocab, int64_t length,
                                                 Vocab::Padding padding = Vocab::Padding::Post);

}  // namespace mox::data
