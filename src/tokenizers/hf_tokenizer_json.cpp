// tokenizer.json (with tokenizer_config.json) -> Spec: the model (BPE, WordPiece), added tokens,
// normalizers, pre-tokenizers, decoder and post-processor as the Rust `tokenizers` library
// writes them; and load_hf_tokenizer, which picks tokenizer.json or the slow vocab files.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/hf_spec.h"
#include "tokenizers/hf_unicode.h"
#include "tokenizers/pair_merge.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {

namespace fs = std::filesystem;
using json = nlohmann::json;

class JsonParser::Impl {
 public:
  Impl(std::string source, Spec* spec) : source_(std::move(source)), s_(spec) {}

  void parse(const json& root, const json* config) {
    if (!root.is_object()) throw malformed(source_, "the top level is not a JSON object");
    section_ = "model";
    if (!root.contains("model") || !root["model"].is_object()) {
      throw malformed(source_, "it has no \"model\" object");
    }
    parse_model(root["model"]);
    section_ = "added_tokens";
    if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
      for (const json& t : root["added_tokens"]) {
        AddedToken a;
        a.id = t.at("id").get<TokenId>();
        a.content = t.at("content").get<std::string>();
        a.special = t.value("special", false);
        a.lstrip = t.value("lstrip", false);
        a.rstrip = t.value("rstrip", false);
        if (a.content.empty()) continue;
        set_piece(s_, a.id, a.content, false);
        s_->added.push_back(a);
      }
    }
    s_->in_model.resize(s_->pieces.size(), false);
    section_ = "normalizer";
    if (root.contains("normalizer")) parse_normalizer(root["normalizer"]);
    section_ = "pre_tokenizer";
    if (root.contains("pre_tokenizer")) parse_pre_tokenizer(root["pre_tokenizer"]);
    section_ = "decoder";
    if (root.contains("decoder")) parse_decoder(root["decoder"]);
    section_ = "post_processor";
    if (root.contains("post_processor")) parse_post_processor(root["post_processor"]);
    if (config != nullptr) {
      section_ = "tokenizer_config.json";
      parse_config(*config);
    }
    finish_spec(s_);
    bool byte_level = s_->decoder.byte_level;
    bool metaspace = s_->byte_fallback;
    for (const PreTokenizer& p : s_->pre_tokenizers) {
      byte_level = byte_level || p.kind == PreTokenizer::kByteLevel;
      metaspace = metaspace || p.kind == PreTokenizer::kMetaspace;
    }
    for (const Normalizer& n : s_->normalizers) {
      metaspace = metaspace || (n.kind == Normalizer::kReplace && n.content == kMetaspace);
    }
    s_->kind = s_->wordpiece ? "hf-wordpiece"
               : byte_level  ? "hf-bpe-bytelevel"
               : metaspace   ? "hf-bpe-metaspace"
                             : "hf-bpe";
  }

  const std::string& section() const { return section_; }

 private:
  Error unsupported(const std::string& what) const {
    return Error(ErrorCode::kUnsupported,
                 "unsupported " + what + " in the " + section_ + " of tokenizer file " + source_,
                 "candor reads BPE (byte-level or metaspace) and WordPiece tokenizers; "
                 "docs/tokenizers.md lists the supported components");
  }

  TokenId lookup(const std::string& token) const {
    const auto it = vocab_.find(token);
    if (it != vocab_.end()) return it->second;
    for (const AddedToken& a : s_->added)
      if (a.content == token) return a.id;
    return -1;
  }

  void parse_model(const json& m) {
    std::string type = m.value("type", std::string());
    if (type.empty()) type = m.contains("merges") ? "BPE" : "WordPiece";
    if (type != "BPE" && type != "WordPiece") {
      throw Error(ErrorCode::kUnsupported,
                  "tokenizer file " + source_ + " has a model of type \"" + type +
                      "\", which candor does not support",
                  "supported model types: BPE and WordPiece");
    }
    if (!m.contains("vocab") || !m["vocab"].is_object()) {
      throw malformed(source_, "model.vocab is not an object of piece -> id");
    }
    vocab_.reserve(m["vocab"].size() * 2);
    for (const auto& [piece, id] : m["vocab"].items()) {
      const TokenId t = id.get<TokenId>();
      set_piece(s_, t, piece, true);
      vocab_.emplace(piece, t);
    }
    auto opt_string = [&](const char* key) {
      return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string();
    };
    if (type == "WordPiece") {
      s_->wordpiece = true;
      s_->subword_prefix =
          m.contains("continuing_subword_prefix") ? opt_string("continuing_subword_prefix") : "##";
      s_->max_word_chars = m.value("max_input_chars_per_word", 100);
      const std::string unk = m.contains("unk_token") ? opt_string("unk_token") : "[UNK]";
      s_->unk = unk.empty() ? -1 : lookup(unk);
      s_->decoder.wordpiece = true;  // until a decoder says otherwise
      s_->decoder.wordpiece_prefix = s_->subword_prefix;
      return;
    }
    s_->byte_fallback = m.value("byte_fallback", false);
    s_->fuse_unk = m.value("fuse_unk", false);
    s_->ignore_merges = m.value("ignore_merges", false);
    s_->subword_prefix = opt_string("continuing_subword_prefix");
    s_->word_suffix = opt_string("end_of_word_suffix");
    const std::string unk = opt_string("unk_token");
    s_->unk = unk.empty() ? -1 : lookup(unk);
    if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0) {
      throw unsupported("BPE dropout (a training-time option)");
    }
    if (!m.contains("merges") || !m["merges"].is_array()) {
      throw malformed(source_, "model.merges is not an array");
    }
    const json& merges = m["merges"];
    s_->merges.reserve(merges.size() * 2);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& entry = merges[rank];
      std::string a, b;
      if (entry.is_string()) {
        const std::string line = entry.get<std::string>();
        const size_t space = line.find(' ', 1);
        if (space == std::string::npos) {
          throw malformed(source_, "merge " + std::to_string(rank) + " (\"" + line +
                                       "\") is not two pieces separated by a space");
        }
        a = line.substr(0, space);
        b = line.substr(space + 1);
      } else if (entry.is_array() && entry.size() == 2) {
        a = entry[0].get<std::string>();
        b = entry[1].get<std::string>();
      } else {
        throw malformed(source_,
                        "merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
      add_merge(a, b, rank);
    }
  }

  void add_merge(const std::string& a, const std::string& b, size_t rank) {
    const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end()) {
      throw malformed(source_, "merge " + std::to_string(rank) + " (\"" + a + " " + b +
                                   "\") names a piece missing from the vocabulary");
    }
    s_->merges.emplace(pair_key(ia->second, ib->second),
                       Merge{static_cast<float>(rank), im->second});
  }

 public:
  // For the slow vocab.json + merges.txt files.
  void set_vocab(const json& vocab) {
    for (const auto& [piece, id] : vocab.items()) {
      set_piece(s_, id.get<TokenId>(), piece, true);
      vocab_.emplace(piece, id.get<TokenId>());
    }
  }
  void add_merge_line(const std::string& line, size_t rank) {
    const size_t space = line.find(' ', 1);
    if (space == std::string::npos) {
      throw malformed(source_, "merge line " + std::to_string(rank + 1) + " (\"" + line +
                                   "\") is not two pieces separated by a space");
    }
    add_merge(line.substr(0, space), line.substr(space + 1), rank);
  }
  void parse_config(const json& c) {
    auto token = [&](const char* key) -> TokenId {
      if (!c.contains(key)) return -2;
      const json& v = c[key];
      std::string text;
      if (v.is_string()) {
        text = v.get<std::string>();
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        text = v["content"].get<std::string>();
      } else {
        return -1;
      }
      return lookup(text);
    };
    if (const TokenId t = token("bos_token"); t != -2) s_->bos = t;
    if (const TokenId t = token("eos_token"); t != -2) s_->eos = t;
    if (const TokenId t = token("pad_token"); t != -2) s_->pad = t;
    if (const TokenId t = token("unk_token"); t >= 0 && s_->unk < 0) s_->unk = t;
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) {
      s_->prefix.clear();
      if (c["add_bos_token"].get<bool>() && s_->bos >= 0) s_->prefix.push_back(s_->bos);
    }
    if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) {
      s_->suffix.clear();
      if (c["add_eos_token"].get<bool>() && s_->eos >= 0) s_->suffix.push_back(s_->eos);
    }
    if (c.contains("tokenizer_class") && c["tokenizer_class"].is_string()) {
      s_->tokenizer_class = c["tokenizer_class"].get<std::string>();
    }
    if (c.contains("chat_template")) {
      const json& t = c["chat_template"];
      if (t.is_string()) {
        s_->chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        for (const json& named : t) {
          if (named.value("name", std::string()) == "default" || s_->chat_template.empty()) {
            s_->chat_template = named.value("template", std::string());
          }
        }
      }
    }
  }

 private:
  std::shared_ptr<uni::Regex> pattern(const json& p) {
    if (p.contains("Regex")) {
      return std::make_shared<uni::Regex>(p["Regex"].get<std::string>(), false,
                                          section_ + " of " + source_);
    }
    if (p.contains("String")) {
      return std::make_shared<uni::Regex>(p["String"].get<std::string>(), true,
                                          section_ + " of " + source_);
    }
    throw malformed(source_, "a pattern in the " + section_ + " is neither String nor Regex");
  }

  void parse_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = n.at("type").get<std::string>();
    Normalizer out;
    if (type == "Sequence") {
      for (const json& child : n.at("normalizers")) parse_normalizer(child);
      return;
    } else if (type == "Prepend") {
      out.kind = Normalizer::kPrepend;
      out.content = n.at("prepend").get<std::string>();
    } else if (type == "Replace") {
      out.kind = Normalizer::kReplace;
      out.pattern = pattern(n.at("pattern"));
      out.content = n.at("content").get<std::string>();
    } else if (type == "NFC") {
      out.kind = Normalizer::kNFC;
    } else if (type == "NFD") {
      out.kind = Normalizer::kNFD;
    } else if (type == "NFKC") {
      out.kind = Normalizer::kNFKC;
    } else if (type == "NFKD") {
      out.kind = Normalizer::kNFKD;
    } else if (type == "Lowercase") {
      out.kind = Normalizer::kLowercase;
    } else if (type == "Strip") {
      out.kind = Normalizer::kStrip;
      out.left = n.value("strip_left", true);
      out.right = n.value("strip_right", true);
    } else if (type == "StripAccents") {
      out.kind = Normalizer::kStripAccents;
    } else if (type == "BertNormalizer") {
      out.kind = Normalizer::kBert;
      out.clean_text = n.value("clean_text", true);
      out.chinese = n.value("handle_chinese_chars", true);
      out.lowercase = n.value("lowercase", true);
      out.strip_accents = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                              ? n["strip_accents"].get<bool>()
                              : out.lowercase;
    } else {
      throw unsupported("normalizer \"" + type + "\"");
    }
    s_->normalizers.push_back(std::move(out));
  }

  static Behavior behavior(const std::string& name, const std::string& source) {
    if (name == "Removed") return Behavior::kRemoved;
    if (name == "Isolated") return Behavior::kIsolated;
    if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
    if (name == "MergedWithNext") return Behavior::kMergedWithNext;
    if (name == "Contiguous") return Behavior::kContiguous;
    throw malformed(source, "unknown split behavior \"" + name + "\"");
  }

  static PreTokenizer::Prepend prepend_scheme(const json& j) {
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string scheme = j["prepend_scheme"].get<std::string>();
      if (scheme == "first") return PreTokenizer::kFirst;
      if (scheme == "never") return PreTokenizer::kNever;
      return PreTokenizer::kAlways;
    }
    return j.value("add_prefix_space", true) ? PreTokenizer::kAlways : PreTokenizer::kNever;
  }

  void parse_pre_tokenizer(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.at("type").get<std::string>();
    PreTokenizer out;
    if (type == "Sequence") {
      for (const json& child : p.at("pretokenizers")) parse_pre_tokenizer(child);
      return;
    } else if (type == "Split") {
      out.kind = PreTokenizer::kSplit;
      out.pattern = pattern(p.at("pattern"));
      out.behavior = behavior(p.value("behavior", std::string("Isolated")), source_);
      out.invert = p.value("invert", false);
    } else if (type == "ByteLevel") {
      out.kind = PreTokenizer::kByteLevel;
      out.add_prefix_space = p.value("add_prefix_space", true);
      if (p.value("use_regex", true)) {
        out.pattern = std::make_shared<uni::Regex>(kGpt2Pattern, false, "ByteLevel");
      }
    } else if (type == "Metaspace") {
      out.kind = PreTokenizer::kMetaspace;
      out.replacement = p.value("replacement", std::string(kMetaspace));
      out.prepend = prepend_scheme(p);
      out.split = p.value("split", true);
    } else if (type == "BertPreTokenizer") {
      out.kind = PreTokenizer::kBert;
    } else if (type == "Whitespace") {
      out.kind = PreTokenizer::kWhitespace;
      out.pattern = std::make_shared<uni::Regex>("\\w+|[^\\w\\s]+", false, "Whitespace");
    } else if (type == "WhitespaceSplit") {
      out.kind = PreTokenizer::kWhitespaceSplit;
    } else if (type == "Digits") {
      out.kind = PreTokenizer::kDigits;
      out.individual_digits = p.value("individual_digits", false);
    } else if (type == "Punctuation") {
      out.kind = PreTokenizer::kPunctuation;
    } else {
      throw unsupported("pre-tokenizer \"" + type + "\"");
    }
    s_->pre_tokenizers.push_back(std::move(out));
  }

  void parse_decoder(const json& d) {
    if (d.is_null()) return;
    const std::string type = d.at("type").get<std::string>();
    Decoder& out = s_->decoder;
    if (type == "Sequence") {
      for (const json& child : d.at("decoders")) parse_decoder(child);
    } else if (type == "ByteLevel") {
      out.byte_level = true;
    } else if (type == "Metaspace") {
      out.replacements.emplace_back(d.value("replacement", std::string(kMetaspace)), " ");
      out.strip_first_space = prepend_scheme(d) != PreTokenizer::kNever;
    } else if (type == "WordPiece") {
      out.wordpiece = true;
      out.wordpiece_prefix = d.value("prefix", std::string("##"));
      out.cleanup = d.value("cleanup", true);
    } else if (type == "Replace") {
      const json& pat = d.at("pattern");
      if (!pat.contains("String")) throw unsupported("Replace decoder with a regex pattern");
      out.replacements.emplace_back(pat["String"].get<std::string>(),
                                    d.at("content").get<std::string>());
    } else if (type == "ByteFallback") {
      out.byte_fallback = true;
    } else if (type == "Fuse") {
      // Joining the pieces is what decode() does anyway.
    } else if (type == "Strip") {
      const std::string content = d.value("content", std::string(" "));
      if (content != " " || d.value("stop", 0) != 0 || d.value("start", 0) > 1) {
        throw unsupported("Strip decoder other than one leading space");
      }
      out.strip_first_space = d.value("start", 0) == 1;
    } else {
      throw unsupported("decoder \"" + type + "\"");
    }
    if (!s_->wordpiece) out.wordpiece = false;
  }

  std::vector<TokenId> special_ids(const json& specials, const std::string& name) {
    if (specials.contains(name) && specials[name].contains("ids")) {
      return specials[name]["ids"].get<std::vector<TokenId>>();
    }
    const TokenId id = lookup(name);
    if (id < 0) throw malformed(source_, "post_processor names an unknown token \"" + name + "\"");
    return {id};
  }

  void parse_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.at("type").get<std::string>();
    if (type == "Sequence") {
      for (const json& child : p.at("processors")) parse_post_processor(child);
    } else if (type == "ByteLevel") {
      // Offsets only.
    } else if (type == "TemplateProcessing") {
      const json empty = json::object();
      const json& specials = p.contains("special_tokens") ? p["special_tokens"] : empty;
      bool seen_sequence = false;
      s_->prefix.clear();
      s_->suffix.clear();
      for (const json& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          const auto ids = special_ids(specials, item["SpecialToken"].at("id").get<std::string>());
          auto& side = seen_sequence ? s_->suffix : s_->prefix;
          side.insert(side.end(), ids.begin(), ids.end());
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      s_->prefix = {p.at("cls").at(1).get<TokenId>()};
      s_->suffix = {p.at("sep").at(1).get<TokenId>()};
    } else {
      throw unsupported("post-processor \"" + type + "\"");
    }
  }

  std::string source_;
  Spec* s_;
  std::string section_;
  std::unordered_map<std::string, TokenId> vocab_;
};

JsonParser::JsonParser(std::string source, Spec* spec)
    : impl_(std::make_unique<Impl>(std::move(source), spec)) {}
JsonParser::~JsonParser() = default;
void JsonParser::parse(const json& root, const json* config) { impl_->parse(root, config); }
const std::string& JsonParser::section() const { return impl_->section(); }
void JsonParser::set_vocab(const json& vocab) { impl_->set_vocab(vocab); }
void JsonParser::add_merge_line(const std::string& line, size_t rank) {
  impl_->add_merge_line(line, rank);
}
void JsonParser::parse_config(const json& config) { impl_->parse_config(config); }

namespace {

json parse_json_text(const std::string& data, const std::string& path, const char* what) {
  try {
    return json::parse(data);
  } catch (const json::parse_error& e) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "malformed " + std::string(what) + " " + path + ": not valid JSON (" + e.what() + ")",
        "the file may be truncated or damaged; re-download it with the model");
  }
}

}  // namespace

json read_json(const std::string& path, const char* what) {
  return parse_json_text(read_tokenizer_file(path, what), path, what);
}

// A tokenizer from the parsed tokenizer.json `root` (and tokenizer_config.json, when given).
std::unique_ptr<Tokenizer> tokenizer_from_root(const json& root, const json* config,
                                               const std::string& source) {
  Spec spec;
  spec.source = source;
  JsonParser parser(source, &spec);
  guarded(
      source, [&] { return parser.section(); }, [&] { parser.parse(root, config); });
  return make_hf_tokenizer(std::move(spec));
}

void guarded(const std::string& path, const std::function<std::string()>& section,
             const std::function<void()>& build) {
  try {
    build();
  } catch (const json::exception& e) {
    throw malformed(path, "in its " + section() + ": " + e.what());
  }
}

}  // namespace tokenizers

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& folder_or_file) {
  using namespace tokenizers;
  const fs::path path(folder_or_file);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(ErrorCode::kNotFound, "tokenizer not found: " + folder_or_file,
                "pass a Hugging Face model folder or its tokenizer.json");
  }
  const fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  json config;
  const fs::path config_path = dir / "tokenizer_config.json";
  const bool has_config = fs::is_regular_file(config_path, ec);
  if (has_config) config = read_json(config_path.string(), "tokenizer config");
  if (has_config && !config.is_object()) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed tokenizer config " + config_path.string() + ": not a JSON object");
  }
  const json* config_ptr = has_config ? &config : nullptr;
  fs::path file = path;
  if (fs::is_directory(path, ec)) {
    file = dir / "tokenizer.json";
    if (!fs::exists(file, ec)) return load_slow_vocab_files(dir.string(), config_ptr);
  }
  const std::string source = file.string();
  return tokenizer_from_root(read_json(source, "tokenizer file"), config_ptr, source);
}

std::unique_ptr<Tokenizer> make_hf_tokenizer(const std::string& tokenizer_json,
                                             const std::string& tokenizer_config_json,
                                             const std::string& source) {
  using namespace tokenizers;
  json config;
  const bool has_config = !tokenizer_config_json.empty();
  if (has_config) config = parse_json_text(tokenizer_config_json, source, "tokenizer config");
  if (has_config && !config.is_object()) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed tokenizer config of " + source + ": not a JSON object");
  }
  return tokenizer_from_root(parse_json_text(tokenizer_json, source, "tokenizer"),
                             has_config ? &config : nullptr, source);
}

}  // namespace candor
