// The jobs called directly, without the CLI, on the built-in LM: the explain job's request
// built from text and its envelope, the evaluate job over an in-memory record store (resumption
// skips finished examples, records arrive in data order) and over the files, the generate job,
// and the per-job thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "candor/generate.h"
#include "candor/jobs.h"
#include "candor/report.h"  // render_benchmark_markdown, wherever it is declared
#include "candor/runtime.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

const Model& builtin_lm() {
  static std::unique_ptr<Model> m = load_model(kBuiltin);
  return *m;
}

jobs::ModelSource borrowed() {
  jobs::ModelSource s;
  s.model = &builtin_lm();
  s.path = "builtin-lm";
  return s;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The kind of error f() throws: "request", "error" (another candor::Error) or "none".
template <typename F>
std::string thrown(F f) {
  try {
    f();
  } catch (const jobs::RequestError&) {
    return "request";
  } catch (const Error&) {
    return "error";
  }
  return "none";
}

// --- explain --------------------------------------------------------------------------------

TEST(ExplainJob, LoadsTheModelAndWritesTheEnvelope) {
  jobs::ExplainOptions o;
  o.model.path = kBuiltin;
  o.prompt = "Once upon a time";
  o.methods = {"occlusion", "input_x_gradient"};
  o.granularity = "word";
  std::vector<std::string> started, done;
  jobs::ExplainEvents ev;
  ev.started = [&] { started.push_back("started"); };
  ev.method_done = [&](const std::string& m) { done.push_back(m); };
  jobs::ExplainResult r = jobs::run_explain(o, ev);
  ASSERT_EQ(r.attributions.size(), 2u);
  EXPECT_EQ(started.size(), 1u);
  EXPECT_EQ(done, (std::vector<std::string>{"occlusion", "input_x_gradient"}));
  EXPECT_EQ(r.attributions[0].method, "occlusion");
  EXPECT_EQ(r.context.target_description, "logprob of the predicted next token");
  // The envelope: these keys in this order, the attributions as attribution_to_json gives them.
  std::vector<std::string> keys;
  for (auto it = r.envelope.begin(); it != r.envelope.end(); ++it) keys.push_back(it.key());
  // "warnings" (issue 13: saturated targets) is added after the fields that were there before.
  EXPECT_EQ(keys, (std::vector<std::string>{"model", "prompt", "generated_text", "target",
                                            "attributions", "warnings"}));
  EXPECT_EQ(r.envelope["model"], kBuiltin);
  EXPECT_EQ(r.envelope["prompt"], "Once upon a time");
  ASSERT_EQ(r.envelope["attributions"].size(), 2u);
  EXPECT_EQ(r.envelope["attributions"][1]["method"], "input_x_gradient");
  const std::string text = jobs::envelope_text(r.envelope);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(nlohmann::json::parse(text)["target"], r.context.target_description);
}

TEST(ExplainJob, BorrowedModelGivesTheSameScores) {
  jobs::ExplainOptions o;
  o.model.path = kBuiltin;
  o.prompt = "Lily went to the park";
  o.methods = {"occlusion"};
  jobs::ExplainResult a = jobs::run_explain(o);
  o.model = borrowed();
  jobs::ExplainResult b = jobs::run_explain(o);
  EXPECT_EQ(a.attributions[0].scores, b.attributions[0].scores);
  EXPECT_EQ(b.envelope["model"], "builtin-lm");
}

TEST(ExplainJob, TargetsAndContrastsFromText) {
  jobs::ExplainOptions o;
  o.model = borrowed();
  o.prompt = "Once upon a";
  const Tokenizer& tok = builtin_lm().tokenizer();
  // A token given as its piece (the byte-level vocabulary's pieces spell a space as U+0120).
  const TokenId upon = tok.encode(" upon", false, false).at(0);
  o.target = tok.piece(upon);
  jobs::ExplainSetup s = jobs::build_explain_request(builtin_lm(), o);
  EXPECT_EQ(s.request.target.token, upon);
  // The description shows the token's text (" upon"), not the vocabulary's "Ġupon" (issue 13).
  EXPECT_EQ(s.target_description, "logprob of ' upon'");
  // The same token given as text, without its space (issue 13: "--target the" on "Ġthe").
  o.target = "upon";
  EXPECT_EQ(jobs::build_explain_request(builtin_lm(), o).request.target.token, upon);
  o.target = tok.piece(upon);
  EXPECT_EQ(s.request.input_ids, tok.encode("Once upon a", true, false));

  // No target function given: logprob for a language model, logodds for a classifier.
  EXPECT_EQ(s.request.target.function, TargetFunction::kLogProb);
  EXPECT_EQ(jobs::default_target_function(ModelKind::kClassifier), TargetFunction::kLogOdds);
  o.target = "#300";
  o.target_function = "prob";
  s = jobs::build_explain_request(builtin_lm(), o);
  EXPECT_EQ(s.request.target.token, 300);
  EXPECT_EQ(s.request.target.function, TargetFunction::kProb);

  o.target.clear();
  o.contrast = "#300,#301";
  s = jobs::build_explain_request(builtin_lm(), o);
  EXPECT_EQ(s.request.target.function, TargetFunction::kContrast);
  EXPECT_EQ(s.request.target.token, 300);
  EXPECT_EQ(s.request.target.contrast_token, 301);
  EXPECT_EQ(s.target_description,
            "log p('" + tok.piece(300) + "') - log p('" + tok.piece(301) + "')");

  o.contrast = "the";  // no comma
  EXPECT_EQ(thrown([&] { jobs::build_explain_request(builtin_lm(), o); }), "request");
  o.contrast.clear();
  o.target = "xyzzy plugh";
  EXPECT_THAT(testing::error_of([&] { jobs::build_explain_request(builtin_lm(), o); }),
              HasSubstr("not a single token"));
  o.target = "#999999";
  EXPECT_EQ(thrown([&] { jobs::build_explain_request(builtin_lm(), o); }), "request");
}

TEST(ExplainJob, GeneratedSpan) {
  jobs::ExplainOptions o;
  o.model = borrowed();
  o.prompt = "Once upon a time";
  o.generate = 3;
  jobs::ExplainSetup s = jobs::build_explain_request(builtin_lm(), o);
  GenerateOptions g;
  g.max_new_tokens = 3;
  GenerateResult gr = generate(builtin_lm(), s.request.input_ids, g);
  EXPECT_EQ(s.request.target.span, gr.generated_ids);
  EXPECT_EQ(s.generated_text, gr.text);
  EXPECT_EQ(
      s.target_description,
      "logprob of each of the " + std::to_string(gr.generated_ids.size()) + " generated tokens");
}

TEST(ExplainJob, BadOptionsAreRequestErrorsBeforeTheModelLoads) {
  jobs::ExplainOptions o;
  o.model.path = "/no/such/model";  // never reached: every check comes first
  o.prompt = "hi";
  o.methods = {"integrated_gradient"};
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "request");
  o.methods = {"occlusion"};
  o.granularity = "paragraph";
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "request");
  o.granularity = "token";
  o.generate = -1;
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "request");
  o.generate = 0;
  o.threads = -2;
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "request");
  o.threads = 0;
  o.prompt = "ab\xc3\x28";
  EXPECT_THAT(testing::error_of([&] { jobs::run_explain(o); }), HasSubstr("offset 2"));
  o.prompt = "hi";
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "error");  // now the missing model
  // --consensus needs two methods with scores: found after explaining.
  o.model = borrowed();
  o.consensus = true;
  EXPECT_EQ(thrown([&] { jobs::run_explain(o); }), "request");
}

TEST(ExplainJob, ConsensusAndQualityBlock) {
  jobs::ExplainOptions o;
  o.model = borrowed();
  o.prompt = "Tom had a big red ball";
  o.methods = {"occlusion", "input_x_gradient"};
  o.consensus = true;
  o.evaluate = true;
  bool evaluating = false;
  jobs::ExplainEvents ev;
  ev.evaluating = [&] { evaluating = true; };
  jobs::ExplainResult r = jobs::run_explain(o, ev);
  EXPECT_TRUE(evaluating);
  ASSERT_EQ(r.attributions.size(), 3u);
  EXPECT_EQ(r.attributions[2].method, "consensus");
  for (const auto& a : r.envelope["attributions"]) {
    EXPECT_TRUE(a.contains("quality")) << a["method"];
    if (a.contains("extra")) EXPECT_FALSE(a["extra"].contains("quality"));
  }
}

TEST(ExplainJob, ProgressCanCancel) {
  jobs::ExplainOptions o;
  o.model = borrowed();
  o.prompt = "Once upon a time there was";
  o.methods = {"occlusion"};
  jobs::ExplainEvents ev;
  ev.progress = [](const std::string&, double) { return false; };
  try {
    jobs::run_explain(o, ev);
    ADD_FAILURE() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

// --- threads --------------------------------------------------------------------------------

TEST(ThreadScope, SetsAndRestores) {
  set_num_threads(2);
  {
    ThreadScope t(1);
    EXPECT_EQ(num_threads(), 1);
    {
      ThreadScope u(2);  // at most one thread per core (runtime.h)
      EXPECT_EQ(num_threads(), effective_threads(2));
    }
    EXPECT_EQ(num_threads(), 1);
  }
  EXPECT_EQ(num_threads(), 2);
}

TEST(ThreadScope, EachCallingThreadKeepsItsOwnCount) {
  set_num_threads(2);
  int seen_a = 0, seen_b = 0;
  std::thread a([&] {
    ThreadScope t(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen_a = at::get_num_threads();
  });
  std::thread b([&] {
    ThreadScope t(2);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen_b = at::get_num_threads();
  });
  a.join();
  b.join();
  EXPECT_EQ(seen_a, 1);
  EXPECT_EQ(seen_b, effective_threads(2));
  EXPECT_EQ(num_threads(), effective_threads(2));
}

TEST(ThreadScope, JobsRunWithTheirThreadCountAndRestoreIt) {
  set_num_threads(2);
  jobs::ExplainOptions o;
  o.model = borrowed();
  o.prompt = "Once upon a time";
  o.methods = {"occlusion"};
  o.threads = 1;
  int during = 0;
  jobs::ExplainEvents ev;
  ev.started = [&] { during = num_threads(); };
  jobs::run_explain(o, ev);
  EXPECT_EQ(during, 1);
  EXPECT_EQ(num_threads(), 2);
  // Restored also when the job fails.
  o.consensus = true;
  EXPECT_EQ(thrown([&] { jobs::run_explain(o, ev); }), "request");
  EXPECT_EQ(num_threads(), 2);
}

// --- evaluate -------------------------------------------------------------------------------

// A record store in memory: what the service's audit store will be, as the job sees it.
class MemoryStore : public jobs::RecordStore {
 public:
  nlohmann::ordered_json config;
  std::vector<std::string> names;
  std::vector<jobs::ExampleRecord> records;
  std::vector<int64_t> appended;  // data lines, in the order they arrived
  nlohmann::json summary;
  int finished = 0;

  void begin(const nlohmann::ordered_json& c, const std::vector<std::string>& n) override {
    if (!config.is_null() && config != c)
      throw jobs::RequestError("the store holds a run with other settings");
    config = c;
    names = n;
    appended.clear();
  }
  std::vector<jobs::ExampleRecord> done() const override { return records; }
  void append(const jobs::ExampleRecord& r) override {
    records.push_back(r);
    appended.push_back(r.line);
  }
  void finish(const nlohmann::json& s) override {
    summary = s;
    ++finished;
  }
};

const char* kTexts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a big red ball. He liked to play with it in the park.",
    "The sun was hot and the cat wanted to sleep.",
    "One day, a bird flew to the tree and sang a song.",
    "The dog ran fast to catch the stick.",
};

std::string write_texts(const std::string& dir, bool with_blank = false) {
  std::string path = dir + "/texts.jsonl";
  std::ofstream f(path);
  for (size_t i = 0; i < std::size(kTexts); ++i) {
    f << nlohmann::json{{"text", kTexts[i]}}.dump() << "\n";
    if (with_blank && i == 1) f << nlohmann::json{{"text", "   "}}.dump() << "\n";
  }
  return path;
}

jobs::EvaluateOptions eval_options(const std::string& data) {
  jobs::EvaluateOptions o;
  o.model = borrowed();
  o.data = data;
  o.methods = {"occlusion", "input_x_gradient"};
  o.metrics = {"comprehensiveness", "deletion"};
  o.max_tokens = 10;
  o.curve_points = 4;
  o.bootstrap = 50;
  o.decoys = true;
  return o;
}

TEST(EvaluateJob, RecordsArriveInOrderAndResumptionSkipsThem) {
  const std::string data = write_texts(testing::temp_dir());
  const jobs::EvaluateOptions o = eval_options(data);

  // The whole run at once.
  MemoryStore full;
  jobs::EvaluateResult all = jobs::run_evaluate(o, full);
  EXPECT_TRUE(all.complete);
  EXPECT_EQ(all.n_computed, 5);
  EXPECT_EQ(full.appended, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(full.finished, 1);
  EXPECT_EQ(full.names, (std::vector<std::string>{"occlusion", "input_x_gradient", "decoy:random",
                                                  "decoy:inverted", "decoy:first", "decoy:last",
                                                  "decoy:other_target"}));
  for (const auto& r : full.records) EXPECT_EQ(r.methods.size(), full.names.size());
  EXPECT_EQ(full.summary, all.summary);
  EXPECT_EQ(all.summary["complete"], true);

  // Stopped after two examples, then resumed on the same store.
  MemoryStore store;
  int asked = 0;
  jobs::EvaluateEvents stop_after_two;
  stop_after_two.stop = [&] { return asked++ == 2; };
  jobs::EvaluateResult first = jobs::run_evaluate(o, store, stop_after_two);
  EXPECT_FALSE(first.complete);
  EXPECT_EQ(first.summary["complete"], false);
  EXPECT_EQ(store.appended, (std::vector<int64_t>{1, 2}));
  std::vector<std::string> notices;
  std::vector<size_t> progress;
  jobs::EvaluateEvents ev;
  ev.notice = [&](const std::string& s) { notices.push_back(s); };
  ev.progress = [&](const jobs::EvaluateProgress& p) {
    progress.push_back(p.done);
    EXPECT_EQ(p.total, 5u);
    EXPECT_EQ(p.to_compute, 3);
  };
  jobs::EvaluateResult second = jobs::run_evaluate(o, store, ev);
  EXPECT_TRUE(second.complete);
  EXPECT_EQ(second.n_resumed, 2);
  EXPECT_EQ(second.n_computed, 3);
  EXPECT_EQ(store.appended, (std::vector<int64_t>{3, 4, 5}));  // the done ones are skipped
  EXPECT_EQ(progress, (std::vector<size_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(notices, (std::vector<std::string>{"resuming: 2 example(s) already evaluated"}));
  // The same records as the whole run, so the same table.
  ASSERT_EQ(store.records.size(), full.records.size());
  for (size_t i = 0; i < store.records.size(); ++i)
    EXPECT_EQ(jobs::example_record_to_json(store.records[i]),
              jobs::example_record_to_json(full.records[i]));
  EXPECT_EQ(second.summary, all.summary);

  // Other settings on the same store: refused.
  jobs::EvaluateOptions other = o;
  other.seed = 7;
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(other, store); }), "request");
}

TEST(EvaluateJob, BadRowsAreSkippedAndListedOrFail) {
  const std::string data = write_texts(testing::temp_dir(), true);
  jobs::EvaluateOptions o = eval_options(data);
  o.decoys = false;
  o.limit = 3;
  MemoryStore fail_store;
  EXPECT_THAT(testing::error_of([&] { jobs::run_evaluate(o, fail_store); }),
              HasSubstr("line 3: no text in column 'text'"));
  o.on_error = "skip";
  MemoryStore store;
  std::vector<std::string> notices;
  jobs::EvaluateEvents ev;
  ev.notice = [&](const std::string& s) { notices.push_back(s); };
  jobs::EvaluateResult r = jobs::run_evaluate(o, store, ev);
  EXPECT_EQ(r.n_skipped, 1u);
  EXPECT_EQ(store.appended, (std::vector<int64_t>{1, 2, 4}));
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_THAT(notices[0], HasSubstr("line 3: no text in column 'text' (skipped)"));
  EXPECT_EQ(r.summary["skipped"][0]["line"], 3);
}

TEST(EvaluateJob, BadOptionsAreRequestErrors) {
  jobs::EvaluateOptions o = eval_options("/no/such/data.jsonl");
  MemoryStore store;
  o.max_tokens = 1;
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(o, store); }), "request");
  o.max_tokens = 10;
  o.methods = {"occlusion", "occlusion"};
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(o, store); }), "request");
  o.methods = {"occlusion"};
  o.attack = "bogus";
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(o, store); }), "request");
  o.attack.clear();
  o.metrics = {"nonsense"};
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(o, store); }), "request");
  o.metrics.clear();
  EXPECT_EQ(thrown([&] { jobs::run_evaluate(o, store); }), "error");  // the missing data
  EXPECT_TRUE(store.config.is_null());                                // never opened
}

TEST(EvaluateJob, FileRecordStoreWritesAndResumes) {
  const std::string dir = testing::temp_dir();
  const std::string data = write_texts(dir);
  jobs::EvaluateOptions o = eval_options(data);
  const std::string out = dir + "/out/run";
  {
    jobs::FileRecordStore store(out);
    int asked = 0;
    jobs::EvaluateEvents ev;
    ev.stop = [&] { return asked++ == 3; };
    EXPECT_FALSE(jobs::run_evaluate(o, store, ev).complete);
  }
  std::string examples = slurp(out + "/examples.jsonl");
  EXPECT_EQ(std::count(examples.begin(), examples.end(), '\n'), 3);
  // An example cut off by an interruption is dropped (with a note) and redone.
  {
    std::ofstream f(out + "/examples.jsonl", std::ios::app);
    f << "{\"line\": 4, \"meth";
  }
  std::vector<std::string> notes;
  jobs::FileRecordStore store(out, [&](const std::string& s) { notes.push_back(s); });
  jobs::EvaluateResult r = jobs::run_evaluate(o, store);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.n_resumed, 3);
  EXPECT_EQ(r.n_computed, 2);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_THAT(notes[0], HasSubstr("1 unfinished record(s)"));
  examples = slurp(out + "/examples.jsonl");
  std::istringstream lines(examples);
  std::string line;
  int64_t expect = 1;
  while (std::getline(lines, line)) EXPECT_EQ(nlohmann::json::parse(line)["line"], expect++);
  EXPECT_EQ(expect, 6);
  EXPECT_EQ(nlohmann::json::parse(slurp(out + "/table.json")), r.summary);
  EXPECT_EQ(slurp(out + "/table.md"), render_benchmark_markdown(r.summary));
  EXPECT_THAT(slurp(out + "/report.html"), HasSubstr("<!DOCTYPE html>"));
  EXPECT_EQ(nlohmann::json::parse(slurp(out + "/run.json"))["methods"],
            (nlohmann::json{"occlusion", "input_x_gradient"}));
  // Other settings on the same folder: refused.
  o.seed = 3;
  jobs::FileRecordStore again(out);
  EXPECT_THAT(testing::error_of([&] { jobs::run_evaluate(o, again); }),
              HasSubstr("holds a run with other settings"));
}

// --- generate -------------------------------------------------------------------------------

TEST(GenerateJob, ResultAndJson) {
  jobs::GenerateJobOptions o;
  o.model = borrowed();
  o.prompt = "Once upon a time";
  o.generation.max_new_tokens = 12;
  std::string echoed, streamed;
  o.generation.on_token = [&](TokenId, const std::string& piece) {
    streamed += piece;
    return true;
  };
  jobs::GenerateEvents ev;
  ev.prompt_ready = [&](const std::string& p) { echoed = p; };
  jobs::GenerateJobResult r = jobs::run_generate(o, ev);
  EXPECT_EQ(echoed, "Once upon a time");
  GenerateOptions g;
  g.max_new_tokens = 12;
  GenerateResult direct = generate(builtin_lm(), "Once upon a time", g);
  EXPECT_EQ(r.result.generated_ids, direct.generated_ids);
  EXPECT_EQ(streamed, direct.text);
  EXPECT_EQ(r.json["text"], direct.text);
  EXPECT_EQ(r.json["model"], "builtin-lm");
  EXPECT_EQ(r.json["options"]["max_new_tokens"], 12);
  EXPECT_TRUE(r.json.contains("timing"));
  o.generation.top_p = 2;
  EXPECT_EQ(thrown([&] { jobs::run_generate(o); }), "request");
}

}  // namespace
}  // namespace candor
