// Tokenizer trainers: vocabularies learnt from texts, as Hugging Face tokenizer.json texts that
// make_hf_tokenizer turns into a Tokenizer in memory (and load_hf_tokenizer reads back once they
// are saved with a model). A WordPiece trainer (BERT normalisation, for the transformer
// classifier) and a byte-level BPE trainer (GPT-2 style, for the LM students). Part of
// candor_train.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace candor::train {

// --- WordPiece ---------------------------------------------------------------------------------

// A WordPiece vocabulary learnt from `texts` by BPE-style merges (the way Hugging Face's
// WordPiece trainer does it): BERT normalisation (lower case, accents stripped) and
// pre-tokenisation (whitespace and punctuation), then every character (word-initial, and
// "##"-prefixed inside words), then the most frequent adjacent pairs merged until `size` pieces.
// Starts with [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4). Deterministic.
std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& texts, int64_t size);
// tokenizer.json (Hugging Face format: BertNormalizer, BertPreTokenizer, WordPiece, a template
// that puts [CLS] first) for a vocabulary from build_wordpiece_vocab.
std::string wordpiece_tokenizer_json(const std::vector<std::string>& vocab);

// --- byte-level BPE ----------------------------------------------------------------------------

struct BpeTrainOptions {
  int32_t vocab_size = 1024;  // <unk>, <s>, </s>, the 256 bytes, then merges up to this size
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
};

// Splits text the way the GPT-2 byte-level pre-tokenizer does for ASCII text (contractions, an
// optional space before a run of letters, digits or other symbols, whitespace runs); bytes >= 0x80
// count as letters.
std::vector<std::string> bpe_pretokenize(const std::string& text);

// A learnt byte-level BPE tokenizer as the texts of its two files.
struct BpeTokenizerFiles {
  std::string tokenizer_json;         // tokenizer.json
  std::string tokenizer_config_json;  // tokenizer_config.json
};

// Learns byte-level BPE merges from `texts` (the most frequent adjacent pair first, ties broken by
// the smaller ids): tokenizer.json (ByteLevel pre-tokenizer and decoder, BPE model, <s> added
// first by the post-processor) and tokenizer_config.json (bos <s>, eos </s>, unk <unk>).
// Deterministic: the same texts give the same files. Throws Error(kInvalidArgument) when `texts`
// holds no text or vocab_size < 259.
BpeTokenizerFiles learn_bpe_tokenizer(const std::vector<std::string>& texts,
                                      const BpeTrainOptions& o);

// Writes `files` into `dir` (created) as tokenizer.json and tokenizer_config.json. Returns the
// path of tokenizer.json. Throws Error(kNotFound) when a file cannot be written.
std::string write_bpe_tokenizer(const BpeTokenizerFiles& files, const std::string& dir);

// learn_bpe_tokenizer, then write_bpe_tokenizer into `dir`. Returns the path of tokenizer.json.
std::string train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& o,
                                const std::string& dir);

}  // namespace candor::train
