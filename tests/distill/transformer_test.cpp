// The transformer text student: vocabulary, reproducibility, resume, the saved Hugging Face
// folder, distillation of the fastText teacher, bad input.
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "candor/runtime.h"
#include "candor/text_transformer.h"
#include "candor/tokenizer_trainers.h"
#include "test_util.h"

namespace candor::train {
namespace {

using candor::testing::error_of;

// Sentences whose class is a known function of their words: "pos" when a positive word occurs
// and no "not" comes before it, else "neg".
struct Corpus {
  std::vector<std::string> texts;
  std::vector<int> labels;  // 0 = neg, 1 = pos
};
Corpus corpus(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const char* filler[] = {"the",   "film", "was", "really", "this",    "phone", "is", "a",
                          "story", "food", "and", "quite",  "service", "of",    "it"};
  const char* good[] = {"good", "great", "lovely", "excellent"};
  const char* bad[] = {"bad", "awful", "boring", "terrible"};
  Corpus c;
  for (size_t i = 0; i < n; ++i) {
    const bool pos = rng() % 2 == 0, negate = rng() % 4 == 0;
    std::string s;
    const size_t len = 3 + rng() % 6, at = rng() % len;
    for (size_t w = 0; w < len; ++w) {
      if (w == at) {
        if (negate) s += "not ";
        s += (pos != negate) ? good[rng() % 4] : bad[rng() % 4];
      } else {
        s += filler[rng() % 15];
      }
      s += w + 1 < len ? " " : (rng() % 2 ? "." : "!");
    }
    c.texts.push_back(s);
    c.labels.push_back(pos ? 1 : 0);
  }
  return c;
}

distill::Probs one_hot(const std::vector<int>& y) {
  distill::Probs p(y.size(), std::vector<double>(2, 0.0));
  for (size_t i = 0; i < y.size(); ++i) p[i][y[i]] = 1.0;
  return p;
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!at::equal(a[i], b[i])) return false;
  return true;
}

TransformerOptions tiny() {
  TransformerOptions t;
  t.dim = 16;
  t.layers = 1;
  t.heads = 2;
  t.hidden = 32;
  t.max_len = 16;
  t.vocab = 120;
  t.alpha = 0;
  t.dropout = 0.1;
  return t;
}

TEST(Transformer, WordPieceVocabularyAndTokenizer) {
  Corpus c = corpus(300, 1);
  c.texts.push_back("Café crème, déjà-vu!");
  auto v = build_wordpiece_vocab(c.texts, 150);
  ASSERT_GE(v.size(), 5u);
  EXPECT_EQ(v[0], "[PAD]");
  EXPECT_EQ(v[1], "[UNK]");
  EXPECT_EQ(v[2], "[CLS]");
  EXPECT_LE(v.size(), 150u);
  EXPECT_EQ(v, build_wordpiece_vocab(c.texts, 150));  // deterministic
  // Frequent words become single pieces; accents are stripped, case folded.
  EXPECT_NE(std::find(v.begin(), v.end(), "the"), v.end());
  EXPECT_NE(std::find(v.begin(), v.end(), "##e"), v.end());
  EXPECT_EQ(std::find(v.begin(), v.end(), "é"), v.end());
  const std::string dir = testing::temp_dir();
  { std::ofstream(dir + "/tokenizer.json") << wordpiece_tokenizer_json(v); }
  auto tok = load_hf_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(tok->kind(), "hf-wordpiece");
  std::vector<TokenId> ids = tok->encode("The film was GREAT.", true, false);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids[0], 2);                     // [CLS] first
  EXPECT_EQ(tok->piece(ids[1]), "the");     // lower-cased
  EXPECT_EQ(tok->piece(ids.back()), ".");   // punctuation split off
  for (TokenId id : ids) EXPECT_NE(id, 1);  // no [UNK]: every character was seen
  // A word made of known characters is split into pieces; an unseen character gives [UNK].
  std::vector<TokenId> odd = tok->encode("filmstory", false, false);
  EXPECT_GE(odd.size(), 2u);
  EXPECT_EQ(tok->piece(odd[1]).substr(0, 2), "##");
  EXPECT_EQ(tok->encode("zzq\xE2\x82\xAC", false, false), std::vector<TokenId>{1});
}

TEST(Transformer, SameSeedSameWeightsAndResumeEqualsUninterrupted) {
  candor::set_num_threads(1);
  Corpus c = corpus(240, 2);
  TransformerOptions t = tiny();
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 16;
  o.learning_rate = 3e-3;
  o.seed = 7;
  std::vector<std::string> classes = {"neg", "pos"};
  auto a = TransformerClassifier::train(c.texts, one_hot(c.labels), c.labels, classes, t, o);
  auto b = TransformerClassifier::train(c.texts, one_hot(c.labels), c.labels, classes, t, o);
  EXPECT_TRUE(same(a->parameters(), b->parameters()));
  EXPECT_EQ(a->epoch_losses().size(), 3u);
  TrainOptions o2 = o;
  o2.seed = 8;
  auto d = TransformerClassifier::train(c.texts, one_hot(c.labels), c.labels, classes, t, o2);
  EXPECT_FALSE(same(a->parameters(), d->parameters()));
  // Interrupted after 7 of 45 steps, then resumed from the checkpoint (dropout included).
  const std::string ckpt = testing::temp_dir() + "/t.ckpt";
  TrainOptions oi = o;
  oi.checkpoint = ckpt;
  oi.stop_after_steps = 7;
  auto partial = TransformerClassifier::train(c.texts, one_hot(c.labels), c.labels, classes, t, oi);
  EXPECT_FALSE(same(a->parameters(), partial->parameters()));
  oi.stop_after_steps = -1;
  oi.resume = true;
  auto resumed = TransformerClassifier::train(c.texts, one_hot(c.labels), c.labels, classes, t, oi);
  EXPECT_TRUE(same(a->parameters(), resumed->parameters()));
}

TEST(Transformer, LearnsARuleWithKdAndReloadsFromItsHuggingFaceFolder) {
  candor::set_num_threads(1);
  Corpus c = corpus(600, 3), held = corpus(200, 4);
  TransformerOptions t = tiny();
  t.alpha = 0.5;
  t.temperature = 2.0;
  TrainOptions o;
  o.epochs = 8;
  o.batch_size = 32;
  o.learning_rate = 5e-3;
  o.seed = 1;
  // A soft teacher: 0.9 / 0.1 on the rule.
  distill::Probs soft(c.labels.size());
  for (size_t i = 0; i < soft.size(); ++i)
    soft[i] = c.labels[i] ? std::vector<double>{0.1, 0.9} : std::vector<double>{0.9, 0.1};
  double last_fidelity = -1;
  o.progress = [&](const TrainProgress& p) {
    if (p.fidelity >= 0) last_fidelity = p.fidelity;
    return true;
  };
  auto m = TransformerClassifier::train(c.texts, soft, {}, {"neg", "pos"}, t, o);
  EXPECT_GT(last_fidelity, 0.85);
  EXPECT_LT(m->epoch_losses().back(), m->epoch_losses().front());
  distill::Probs p = m->predict_proba_batch(held.texts);
  size_t ok = 0;
  for (size_t i = 0; i < p.size(); ++i) ok += (p[i][1] > p[i][0]) == (held.labels[i] == 1);
  EXPECT_GT(ok, 160u) << ok << " of 200 held-out sentences";
  // The training forward equals candor's EncoderClassifier on the same weights ...
  auto same_model = model_text_classifier(m->shared_model());
  distill::Probs q = same_model->predict_proba_batch(held.texts);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i][1], q[i][1], 1e-5);
  // ... and the folder written reloads as a BERT classifier with the same probabilities.
  const std::string dir = testing::temp_dir() + "/student";
  m->save(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  std::shared_ptr<const Model> loaded = load_model(dir);
  EXPECT_EQ(loaded->config().architecture, "bert");
  EXPECT_EQ(loaded->config().labels, (std::vector<std::string>{"neg", "pos"}));
  EXPECT_EQ(loaded->tokenizer().kind(), "hf-wordpiece");
  auto reloaded = model_text_classifier(loaded);
  distill::Probs r = reloaded->predict_proba_batch(held.texts);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(p[i][0], r[i][0], 1e-5) << held.texts[i];
    EXPECT_NEAR(p[i][1], r[i][1], 1e-5) << held.texts[i];
  }
  // A text longer than the context is cut, not refused.
  std::string longer;
  for (int i = 0; i < 40; ++i) longer += "good film ";
  EXPECT_EQ(reloaded->predict_proba(longer).size(), 2u);
}

TEST(Transformer, BadInput) {
  TransformerOptions t;
  TrainOptions o;
  EXPECT_NE(error_of([&] {
              parse_transformer_spec("transformer:depth=3", &t, &o);
            }).find("has no option 'depth'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_transformer_spec("transformer:dim=30,heads=4", &t, &o);
            }).find("not a multiple of heads"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_transformer_spec("transformer:alpha=2", &t, &o);
            }).find("option alpha of student 'transformer' must be a number in [0, 1]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_transformer_spec("transformer:lr=fast", &t, &o);
            }).find("lr of student 'transformer' must be a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_transformer_spec("transformer:epochs=2.5", &t, &o);
            }).find("option epochs of student 'transformer' must be an integer in [1, "),
            std::string::npos);
  TransformerOptions ok;
  parse_transformer_spec("transformer:dim=32,heads=2,epochs=3,alpha=0.7", &ok, &o);
  EXPECT_EQ(ok.dim, 32);
  EXPECT_EQ(o.epochs, 3);
  EXPECT_DOUBLE_EQ(ok.alpha, 0.7);
  // Training input.
  EXPECT_NE(error_of([&] {
              TransformerClassifier::train({"a", "b"}, {{1, 0}}, {}, {"x", "y"}, tiny(), o);
            }).find("2 texts but 1 targets"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              TransformerClassifier::train({"a"}, {{1.0}}, {}, {"x"}, tiny(), o);
            }).find("at least two classes"),
            std::string::npos);
  // The distillation pipeline: a table without a text column.
  data::Table nums = data::parse_csv("x,y,t\n1,2,a\n2,3,b\n3,4,a\n4,5,b\n5,6,a\n", "nums.csv");
  auto teacher = distill::column_teacher(nums, "t");
  distill::DistillOptions d;
  d.student = distill::parse_student("transformer:epochs=1");
  d.features.exclude = {"t"};
  d.test_fraction = 0.4;
  EXPECT_NE(error_of([&] { distill::distill(nums, *teacher, d); }).find("needs a text column"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              distill::parse_student("transformer:layers=0");
            }).find("option layers of student 'transformer' must be an integer in [1, "),
            std::string::npos);
  // A causal LM is not a text classifier.
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::shared_ptr<const Model> lm(&testing::stories260k(), [](const Model*) {});
  EXPECT_NE(error_of([&] { model_text_classifier(lm); }).find("not a sequence classifier"),
            std::string::npos);
}

// Distilling the fastText sentiment teacher into a small transformer (a short run; the longer one
// behind the figures in docs/distillation.md uses the same pipeline through the CLI).
TEST(FastTextTeacher, TransformerStudentAgreesOnHeldOutSentences) {
  CANDOR_REQUIRE_SHARED("models/fasttext_amazon/amazon_review_polarity.ftz");
  CANDOR_REQUIRE_SHARED("data/text/sentiment_labelled_sentences.csv");
  candor::set_num_threads(1);
  data::ReadOptions ro;
  ro.types["label"] = data::ColumnType::kCategorical;
  data::Table t =
      data::read_csv(testing::shared_path("data/text/sentiment_labelled_sentences.csv"), ro);
  std::shared_ptr<const TextClassifier> ft =
      load_fasttext(testing::shared_path("models/fasttext_amazon/amazon_review_polarity.ftz"));
  auto teacher = distill::classifier_teacher(ft, "text", /*normalise=*/true);
  distill::DistillOptions o;
  o.features.columns = {"text"};
  o.student = distill::parse_student(
      "transformer:dim=32,layers=1,heads=2,hidden=64,max_len=40,vocab=1500,epochs=2,lr=3e-3");
  o.student.seed = 1;
  o.label_column = "label";
  o.label_map = {{"1", "__label__2"}, {"0", "__label__1"}};
  o.seed = 1;
  distill::DistillResult r = distill::distill(t, *teacher, o);
  std::cout << "fastText -> transformer (short run): held-out agreement "
            << r.test_fidelity.agreement << ", KL " << r.test_fidelity.kl << ", accuracy "
            << r.test_fidelity.student_accuracy << " (teacher " << r.test_fidelity.teacher_accuracy
            << "), fit " << r.fit_seconds << " s\n";
  EXPECT_EQ(r.test_fidelity.rows, 600u);
  EXPECT_GE(r.test_fidelity.agreement, 0.70);
  nlohmann::json j = r.to_json();
  EXPECT_EQ(j["student"]["kind"], "transformer");
  EXPECT_GT(j["student"]["parameters"].get<int64_t>(), 10000);
}

}  // namespace
}  // namespace candor::train
