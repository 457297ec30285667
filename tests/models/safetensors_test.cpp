// The safetensors reader and writer: round trips for each dtype, sharded archives, and clear
// errors for malformed files (truncated, offsets out of range, unknown dtype).
#include <ATen/ATen.h>

#include <cstring>
#include <fstream>

#include "candor/error.h"
#include "models/formats/safetensors.h"
#include "test_util.h"

namespace candor {
namespace {

std::string write_raw(const std::string& header, const std::string& data) {
  static int n = 0;
  std::string path = testing::temp_dir() + "/raw" + std::to_string(n++) + ".safetensors";
  std::ofstream f(path, std::ios::binary);
  uint64_t len = header.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << header << data;
  return path;
}

Error open_error(const std::string& path) {
  try {
    SafetensorsArchive::open(path);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "opening '" << path << "' did not fail";
  return Error(ErrorCode::kInternal, "");
}

void expect_names(const Error& e, const std::string& path, const std::string& problem) {
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
  EXPECT_FALSE(e.hint().empty());
}

TEST(Safetensors, RoundTripsEachDtypeAndConvertsToFloat) {
  at::Tensor a = at::randn({3, 5}), b = at::randn({7}), c = at::randn({2, 2, 2});
  std::string path = testing::temp_dir() + "/t.safetensors";
  write_safetensors(path, {{"a", a}, {"b.half", b.to(at::kHalf)}, {"c.bf16", c.to(at::kBFloat16)}},
                    {{"format", "pt"}});
  auto st = SafetensorsArchive::open(path);
  EXPECT_EQ(st->names(), (std::vector<std::string>{"a", "b.half", "c.bf16"}));
  EXPECT_EQ(st->dtype("b.half"), "F16");
  EXPECT_EQ(st->shape("c.bf16"), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(st->metadata().at("format"), "pt");
  EXPECT_EQ(st->dtype_summary(), "bf16+f16+f32");
  EXPECT_TRUE(at::equal(st->load("a"), a));
  EXPECT_TRUE(at::equal(st->load("b.half"), b.to(at::kHalf).to(at::kFloat)));
  EXPECT_TRUE(at::equal(st->load("c.bf16"), c.to(at::kBFloat16).to(at::kFloat)));
  EXPECT_EQ(st->load_as("c.bf16", at::kBFloat16).scalar_type(), at::kBFloat16);
  // Loading twice works although the first load released the mapped pages.
  EXPECT_TRUE(at::equal(st->load("a"), a));
  EXPECT_THROW(st->load("missing", {1}), Error);
}

TEST(Safetensors, F32TensorsViewThePrivateMappingAndOutliveTheArchive) {
  at::Tensor a = at::randn({64, 33});
  std::string path = testing::temp_dir() + "/m.safetensors";
  write_safetensors(path, {{"a", a}});
  auto st = SafetensorsArchive::open(path);
  at::Tensor t = st->load("a");
  st.reset();  // the tensor keeps the mapping alive
  EXPECT_TRUE(at::equal(t, a));
  t.add_(1.0);  // copy-on-write: the file is untouched
  EXPECT_TRUE(at::equal(SafetensorsArchive::open(path)->load("a"), a));
}

TEST(Safetensors, DataStartsEightByteAligned) {
  std::string path = testing::temp_dir() + "/al.safetensors";
  write_safetensors(path, {{"x", at::ones({3})}});
  std::ifstream f(path, std::ios::binary);
  uint64_t len = 0;
  f.read(reinterpret_cast<char*>(&len), 8);
  EXPECT_EQ(len % 8, 0u);
}

TEST(SafetensorsErrors, TruncatedFile) {
  std::string path = testing::temp_dir() + "/full.safetensors";
  write_safetensors(path, {{"w", at::randn({16, 16})}});
  std::string cut = testing::temp_dir() + "/cut.safetensors";
  testing::copy_prefix(path, cut, 200);
  expect_names(open_error(cut), cut, "out of range");
  std::string tiny = testing::temp_dir() + "/tiny.safetensors";
  testing::copy_prefix(path, tiny, 5);
  expect_names(open_error(tiny), tiny, "truncated");
  std::string header_cut = testing::temp_dir() + "/hcut.safetensors";
  testing::copy_prefix(path, header_cut, 20);
  expect_names(open_error(header_cut), header_cut, "truncated");
}

TEST(SafetensorsErrors, OffsetsOutOfRangeOrInconsistent) {
  std::string p =
      write_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, '\0'));
  expect_names(open_error(p), p, "out of range");
  p = write_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,0]}})", std::string(8, '\0'));
  expect_names(open_error(p), p, "out of range");
  p = write_raw(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'));
  expect_names(open_error(p), p, "need 12");
}

TEST(SafetensorsErrors, UnknownDtypeAndMalformedHeader) {
  std::string p =
      write_raw(R"({"w":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  expect_names(open_error(p), p, "unknown dtype 'F12'");
  p = write_raw(R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'));
  expect_names(open_error(p), p, "lacks dtype, shape or data_offsets");
  p = write_raw("{nope", "");
  expect_names(open_error(p), p, "not valid JSON");
  // A known but non-float dtype opens, and loading it as a weight says why it cannot.
  p = write_raw(R"({"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0'));
  auto st = SafetensorsArchive::open(p);
  try {
    st->load("w");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("I8"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsErrors, ShapeMismatchNamesTensor) {
  std::string path = testing::temp_dir() + "/s.safetensors";
  write_safetensors(path, {{"layer.w", at::ones({4, 2})}});
  auto st = SafetensorsArchive::open(path);
  try {
    st->load("layer.w", {2, 4});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.w"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace candor
