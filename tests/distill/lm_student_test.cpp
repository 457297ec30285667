// LM students: the BPE trainer, the built-in LM (in the repository), seeded distillation from
// stories260K (reproducible, resumable) and bad input.
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "candor/error.h"
#include "candor/generate.h"
#include "candor/lm_student.h"
#include "candor/tokenizer_trainers.h"
#include "test_util.h"

namespace candor::distill {
namespace {

using train::bpe_pretokenize;
using train::BpeTrainOptions;
using train::train_bpe_tokenizer;

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

std::vector<std::string> small_corpus() {
  return {"Once upon a time, there was a little cat.",
          "The cat liked to play in the sun.",
          "One day, the cat saw a big dog. The dog was happy.",
          "They played together all day and were happy.",
          "Tom's mom said, \"Let's go home.\"",
          "Naïve café — 3 cats and 12 dogs!\n\nThe end."};
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Bpe, PretokenizerSplitsLikeGpt2OnAscii) {
  std::vector<std::string> want = {"Once",  " upon", " a", " time", ",",   " Tom", "'s",  " 12",
                                   " cats", "!",     "\n", "\n",    "The", " ",    " end"};
  EXPECT_EQ(bpe_pretokenize("Once upon a time, Tom's 12 cats!\n\nThe  end"), want);
}

TEST(Bpe, TrainedTokenizerLoadsRoundTripsAndCompresses) {
  const std::string dir = testing::temp_dir() + "/bpe";
  BpeTrainOptions o;
  o.vocab_size = 300;
  const std::string path = train_bpe_tokenizer(small_corpus(), o, dir);
  auto tok = load_hf_tokenizer(dir);
  EXPECT_EQ(tok->kind(), "hf-bpe-bytelevel");
  EXPECT_LE(tok->vocab_size(), 300);
  EXPECT_GT(tok->vocab_size(), 259);  // some merges were learned
  EXPECT_EQ(tok->piece(tok->bos_id()), "<s>");
  EXPECT_EQ(tok->piece(tok->eos_id()), "</s>");
  EXPECT_EQ(tok->piece(tok->unk_id()), "<unk>");
  for (const std::string& t : small_corpus()) {
    std::vector<TokenId> ids = tok->encode(t, true, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], tok->bos_id());
    EXPECT_EQ(tok->decode(ids), t);
    EXPECT_LT(ids.size(), t.size() + 1);  // merges shorten the text's byte sequence
  }
  // Unseen text still round-trips (bytes).
  EXPECT_EQ(tok->decode(tok->encode("Zebra ünïcödé 42", true, false)), "Zebra ünïcödé 42");
  // Frequent words became single pieces.
  EXPECT_EQ(tok->encode(" cat", false, false).size(), 1u);
  // Deterministic.
  const std::string first = read_file(path);
  train_bpe_tokenizer(small_corpus(), o, dir);
  EXPECT_EQ(read_file(path), first);
  EXPECT_THROW(train_bpe_tokenizer({}, o, dir), Error);
  o.vocab_size = 100;
  EXPECT_THROW(train_bpe_tokenizer(small_corpus(), o, dir), Error);
}

TEST(LmStudent, ParsesOptionsAndRejectsBadOnes) {
  LmStudentOptions o = parse_lm_student("lm:dim=64,layers=2,heads=4,vocab=512,tokenizer=teacher");
  EXPECT_EQ(o.dim, 64);
  EXPECT_EQ(o.n_layers, 2);
  EXPECT_EQ(o.vocab_size, 512);
  EXPECT_EQ(o.tokenizer, "teacher");
  EXPECT_EQ(parse_lm_student("lm").dim, 128);
  for (const char* bad : {"lm:dim=abc", "lm:dim=65,heads=4", "lm:colour=red", "lm:vocab=10",
                          "lm:mode=fast", "lm:alpha=2", "lm:dim", "transformer"}) {
    try {
      parse_lm_student(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(LmStudent, WordsAndBoundaries) {
  std::vector<std::string> want = {"tom's", "dog", "ran", "12", "times"};
  EXPECT_EQ(lm_words("Tom's dog ran, 12 times!"), want);
}

// --- the built-in LM (committed; no ../shared needed) ------------------------------------------

std::set<std::string> builtin_words() {
  std::set<std::string> w;
  std::ifstream f(kBuiltin + "/words.txt");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) w.insert(line);
  return w;
}

TEST(BuiltinLm, IsSmallAndLoads) {
  namespace fs = std::filesystem;
  uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(kBuiltin)) total += fs::file_size(e.path());
  EXPECT_LT(total, 5u * 1000 * 1000);
  auto m = load_model(kBuiltin);
  EXPECT_TRUE(m->is_causal());
  EXPECT_EQ(m->config().architecture, "llama");
  EXPECT_EQ(m->tokenizer().kind(), "hf-bpe-bytelevel");
  EXPECT_GT(m->n_params(), 300000);
  EXPECT_GT(builtin_words().size(), 500u);
}

TEST(BuiltinLm, GeneratesEnglishThatIsNotALoop) {
  auto m = load_model(kBuiltin);
  GenerateOptions go;
  go.max_new_tokens = 120;
  GenerateResult r = generate(*m, "Once upon a time", go);
  const std::vector<std::string> words = lm_words(r.text);
  ASSERT_GE(words.size(), 40u) << r.text;
  const std::set<std::string> vocab = builtin_words();
  size_t known = 0;
  for (const std::string& w : words) known += vocab.count(w);
  EXPECT_GE(double(known) / double(words.size()), 0.9) << r.text;
  // Not a loop: most word trigrams are distinct, and no trigram makes up much of the text.
  std::map<std::string, int> tri;
  for (size_t i = 0; i + 2 < words.size(); ++i)
    ++tri[words[i] + " " + words[i + 1] + " " + words[i + 2]];
  int most = 0;
  for (const auto& [t, n] : tri) most = std::max(most, n);
  const double n_tri = double(words.size() - 2);
  std::cout << "distinct trigram ratio " << double(tri.size()) / n_tri
            << ", most frequent trigram covers " << most * 3.0 / double(words.size())
            << " of the words\n";
  // Thresholds fixed before the model was (re)trained, not fitted to its figures.
  EXPECT_GE(double(tri.size()) / n_tri, 0.6) << r.text;
  EXPECT_LE(most * 3.0 / double(words.size()), 0.15) << r.text;
}

TEST(BuiltinLm, CandorExplainRunsOnIt) {
  const std::string json = testing::temp_dir() + "/explain.json";
  std::string out;
  ASSERT_EQ(testing::run_command(std::string(CANDOR_CLI_PATH) + " explain --model " + kBuiltin +
                                     " --prompt 'Once upon a time, there was a little girl' "
                                     "--generate 4 --granularity word --method occlusion "
                                     "--method integrated_gradients:n_steps=16 --no-progress "
                                     "--json " +
                                     json,
                                 &out),
            0)
      << out;
  nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_NE(j.dump().find("occlusion"), std::string::npos);
  EXPECT_NE(j.dump().find("girl"), std::string::npos);
}

// --- distillation from stories260K -------------------------------------------------------------

LmDistillOptions tiny(const std::string& dir) {
  LmDistillOptions o;
  o.student = parse_lm_student(
      "lm:dim=16,layers=1,heads=2,vocab=300,samples=16,sample_tokens=24,held_out=3,batch=4,"
      "epochs=2,context=64,eval_boundaries=4");
  o.seed = 7;
  o.out_dir = dir;
  return o;
}

std::vector<at::Tensor> weights(const Model& m) {
  std::vector<at::Tensor> w;
  for (auto& [n, t] : m.named_parameters()) w.push_back(t.clone());
  return w;
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!at::equal(a[i], b[i])) return false;
  return true;
}

TEST(LmDistill, SameSeedSameStudentAndResumeEqualsUninterrupted) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& teacher = testing::stories260k();
  const std::string base = testing::temp_dir();
  LmDistillResult a = distill_lm(&teacher, tiny(base + "/a"));
  LmDistillResult b = distill_lm(&teacher, tiny(base + "/b"));
  EXPECT_EQ(a.mode, "sequence");
  EXPECT_EQ(a.steps, 8);  // 16 texts / 4 per batch * 2 epochs
  EXPECT_TRUE(same(weights(*a.student), weights(*b.student)));
  EXPECT_EQ(read_file(base + "/a/tokenizer.json"), read_file(base + "/b/tokenizer.json"));
  EXPECT_EQ(read_file(base + "/a/teacher_text.jsonl"), read_file(base + "/b/teacher_text.jsonl"));
  EXPECT_GT(a.held_out.boundaries, 0);
  EXPECT_GE(a.held_out.word_agreement, 0);
  EXPECT_GT(a.held_out.teacher_word_perplexity, 0);
  // Training moved the weights away from the seeded initialisation.
  EXPECT_FALSE(same(weights(*a.student), weights(*make_random_llama(a.student->config(), 7))));
  // Interrupted after 5 steps, then resumed: the same weights as the uninterrupted run.
  LmDistillOptions first = tiny(base + "/d");
  first.stop_after_steps = 5;
  LmDistillResult half = distill_lm(&teacher, first);
  EXPECT_FALSE(half.finished);
  EXPECT_EQ(half.steps, 5);
  LmDistillOptions second = tiny(base + "/d");
  second.resume = true;
  LmDistillResult rest = distill_lm(&teacher, second);
  EXPECT_TRUE(rest.finished);
  EXPECT_TRUE(same(weights(*rest.student), weights(*a.student)));
  // The folder is a model candor loads, with the figures beside it.
  auto loaded = load_model(base + "/a");
  EXPECT_TRUE(same(weights(*loaded), weights(*a.student)));
  nlohmann::json rep = nlohmann::json::parse(read_file(base + "/a/report.json"));
  EXPECT_EQ(rep["steps"], 8);
  EXPECT_TRUE(rep["held_out"].contains("next_word_agreement"));
}

TEST(LmDistill, TokenLevelKdWithTheTeachersTokenizer) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& teacher = testing::stories260k();
  LmDistillOptions o = tiny(testing::temp_dir() + "/kd");
  o.student.tokenizer = "teacher";
  o.student.epochs = 3;
  o.student.lr = 1e-2;
  std::vector<double> losses;
  std::vector<double> fid;
  o.progress = [&](const LmProgress& p) {
    if (p.phase == "train") {
      losses.push_back(p.loss);
      fid.push_back(p.fidelity);
    }
    return true;
  };
  LmDistillResult r = distill_lm(&teacher, o);
  EXPECT_EQ(r.mode, "token");
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_GE(fid.back(), 0.0);
  EXPECT_GE(r.held_out.token_agreement, 0.0);
  EXPECT_GE(r.held_out.token_kl, 0.0);
  // The teacher's tokenizer file went into the folder; the folder loads.
  auto m = load_model(o.out_dir);
  EXPECT_EQ(m->tokenizer().vocab_size(), teacher.tokenizer().vocab_size());
}

TEST(LmDistill, BadInputGivesClearErrors) {
  const std::string dir = testing::temp_dir() + "/bad";
  auto expect = [&](const Model* teacher, LmDistillOptions o, const std::string& what) {
    try {
      distill_lm(teacher, o);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  // A classifier is no causal LM.
  auto bert = load_model(std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/bert");
  expect(bert.get(), tiny(dir), "not a causal LM");
  // No teacher and no text.
  expect(nullptr, tiny(dir), "needs a teacher or a text corpus");
  LmDistillOptions empty = tiny(dir);
  empty.corpus = {"", ""};
  expect(nullptr, empty, "non-empty text");
  // Token-level KD needs the teacher's tokenizer.
  LmDistillOptions token = tiny(dir);
  token.corpus = small_corpus();
  token.student.mode = "token";
  expect(nullptr, token, "mode=token");
}

TEST(LmDistill, TrainsFromTextAlone) {
  LmDistillOptions o = tiny(testing::temp_dir() + "/text");
  std::vector<std::string> corpus;
  for (int i = 0; i < 10; ++i)
    for (const std::string& t : small_corpus()) corpus.push_back(t);
  o.corpus = corpus;
  LmDistillResult r = distill_lm(nullptr, o);
  EXPECT_EQ(r.mode, "sequence");
  EXPECT_GT(r.train_tokens, 0);
  EXPECT_GT(r.held_out.texts, 0);
  EXPECT_GT(r.held_out.student_perplexity, 1.0);
  EXPECT_LT(r.held_out.word_agreement, 0);  // no teacher: nothing to agree with
  EXPECT_TRUE(std::filesystem::exists(o.out_dir + "/model.safetensors"));
}

TEST(LmCli, BadInputExitsWithAClearMessage) {
  const std::string cli = CANDOR_CLI_PATH;
  const std::string dir = testing::temp_dir();
  std::string out;
  // A classifier teacher: runtime error (exit 1) naming the problem.
  EXPECT_EQ(testing::run_command(cli + " distill --student lm --teacher " +
                                     std::string(CANDOR_SOURCE_DIR) +
                                     "/tests/fixtures/models/bert --out " + dir + "/a",
                                 &out),
            1)
      << out;
  EXPECT_NE(out.find("not a causal LM"), std::string::npos) << out;
  // An unknown student option: usage error (exit 2).
  EXPECT_EQ(testing::run_command(
                cli + " distill --student lm:colour=red --teacher x --out " + dir + "/b", &out),
            2)
      << out;
  EXPECT_NE(out.find("colour"), std::string::npos) << out;
  // A corpus whose text column is empty.
  std::ofstream(dir + "/empty.csv") << "text,id\n,1\n,2\n";
  EXPECT_EQ(testing::run_command(cli + " train --student lm --data " + dir +
                                     "/empty.csv --text-column text --out " + dir + "/c",
                                 &out),
            1)
      << out;
  EXPECT_NE(out.find("holds no text"), std::string::npos) << out;
}

}  // namespace
}  // namespace candor::distill
