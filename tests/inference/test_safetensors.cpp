// The safetensors reader is a security boundary: every malformed file gives a clear error,
// never a crash or a huge allocation. Plus the F16/BF16 conversions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "temp_dir_test.hpp"
#include "hilum/inference/safetensors.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;

namespace {

class Safetensors : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
  }
  // A file with the given JSON header and `data_bytes` zero bytes of data.
  fs::path raw(const std::string& header, std::size_t data_bytes, std::uint64_t declared_len = UINT64_MAX) {
    const fs::path p = dir_ / ("f" + std::to_string(counter_++) + ".safetensors");
    std::ofstream out(p, std::ios::binary);
    const std::uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
    out << header;
    for (std::size_t i = 0; i < data_bytes; ++i) out.put('\0');
    return p;
  }
  inf::Error open_error(const fs::path& p) {
    auto f = inf::SafetensorsFile::open(p);
    EXPECT_FALSE(f.ok()) << "accepted a malformed file " << p;
    return f.ok() ? inf::Error{} : f.error();
  }
  int counter_ = 0;
};

TEST_F(Safetensors, WritesAndReadsBackEveryDtype) {
  const std::vector<float> a{1.0f, -2.5f, 3.140625f, 0.0f, 65504.0f, -1e-3f};
  const std::vector<float> b{0.5f, 0.25f};
  const fs::path p = dir_ / "w.safetensors";
  ASSERT_TRUE(inf::write_safetensors(p, {{"z.f32", {2, 3}, a.data(), inf::DType::F32},
                                         {"a.f16", {2, 3}, a.data(), inf::DType::F16},
                                         {"m.bf16", {2}, b.data(), inf::DType::BF16}}).ok());
  auto f = inf::SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensors()[0].name, "a.f16");  // sorted by name
  EXPECT_EQ(f->metadata().at("format"), "pt");
  auto f32 = f->read_f32("z.f32", {2, 3});
  ASSERT_TRUE(f32.ok());
  EXPECT_EQ(f32.value(), a);
  auto f16 = f->read_f32("a.f16");
  ASSERT_TRUE(f16.ok());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR((*f16)[i], a[i], std::abs(a[i]) * 1e-3 + 1e-6) << i;
  EXPECT_EQ((*f16)[4], 65504.0f);  // the largest half
  auto bf = f->read_f32("m.bf16");
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(bf.value(), b);
  auto wrong_shape = f->read_f32("z.f32", {3, 2});
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_NE(wrong_shape.error().message.find("expected [3, 2]"), std::string::npos) << wrong_shape.error().message;
  auto missing = f->read_f32("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, inf::ErrorKind::NotFound);
}

// Issue 16, defect 7: a NaN or an infinity is never a weight; the error names the tensor, in every dtype.
TEST_F(Safetensors, NonFiniteValuesAreRefusedNamingTheTensor) {
  const float nan = std::nanf(""), inf = INFINITY;
  const std::vector<float> with_nan{1.0f, 2.0f, nan, 4.0f}, with_inf{1.0f, inf, 3.0f, 4.0f}, with_minus_inf{-inf, 2.0f, 3.0f, 4.0f};
  const std::vector<float> fine{1.0f, 2.0f, 3.0f, 4.0f};
  const fs::path p = dir_ / "w.safetensors";
  ASSERT_TRUE(inf::write_safetensors(p, {{"bad.f32", {4}, with_nan.data(), inf::DType::F32},
                                         {"bad.f16", {4}, with_minus_inf.data(), inf::DType::F16},
                                         {"bad.bf16", {2, 2}, with_inf.data(), inf::DType::BF16},
                                         {"good", {4}, fine.data(), inf::DType::F32}}).ok());
  auto f = inf::SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.error().message;
  const struct {
    const char* name;
    const char* message;
  } cases[] = {{"bad.f32", "tensor bad.f32 holds a value that is not finite (NaN at index 2)"},
               {"bad.f16", "tensor bad.f16 holds a value that is not finite (-inf at index 0)"},
               {"bad.bf16", "tensor bad.bf16 holds a value that is not finite (+inf at index 1)"}};
  for (const auto& c : cases) {
    auto r = f->read_f32(c.name);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().kind, inf::ErrorKind::Invalid);
    EXPECT_NE(r.error().message.find(c.message), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(f->read_f32("good").ok());
}

TEST(HalfPrecision, ConversionsRoundToNearestEven) {
  EXPECT_EQ(inf::float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(inf::float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(inf::float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(inf::float_to_half(1e6f), 0x7C00);                 // overflow -> inf
  EXPECT_EQ(inf::half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(inf::float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(inf::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(inf::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_TRUE(std::isnan(inf::half_to_float(inf::float_to_half(NAN))));
  EXPECT_EQ(inf::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(inf::bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(inf::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);   // tie -> even
  EXPECT_EQ(inf::float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  for (int i = -1000; i <= 1000; ++i) {  // every representable half survives a round trip
    const auto h = static_cast<std::uint16_t>(0x3C00 + i);
    EXPECT_EQ(inf::float_to_half(inf::half_to_float(h)), h);
  }
}

TEST_F(Safetensors, RejectsMalformedFiles) {
  const std::string ok_tensor = R"("t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  // Sanity: the well-formed variant opens.
  ASSERT_TRUE(inf::SafetensorsFile::open(raw("{" + ok_tensor + "}", 16)).ok());

  struct Case {
    std::string what, header;
    std::size_t data;
    std::string needle;
  };
  const std::vector<Case> cases{
      {"not JSON", "{\"t\": [", 16, "not valid JSON"},
      {"not an object", "[1,2,3]", 0, "not a JSON object"},
      {"offsets past the data", R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 8, "outside"},
      {"byte count vs shape", R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16, "expected 24"},
      {"byte count vs dtype", R"({"t":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})", 16, "expected 8"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, "overlaps"},
      {"gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "gap"},
      {"unused trailing data", "{" + ok_tensor + "}", 20, "use 16"},
      {"reversed offsets", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, "outside"},
      {"negative dimension", R"({"t":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})", 16, "non-negative"},
      {"unknown dtype", R"({"t":{"dtype":"F8_E9M9","shape":[2],"data_offsets":[0,2]}})", 2, "unknown dtype"},
      {"absurd shape", R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16, "absurd"},
      {"missing fields", R"({"t":{"dtype":"F32"}})", 0, "lacks"},
      {"bad offsets type", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}})", 4, "data_offsets"},
  };
  for (const auto& c : cases) {
    const inf::Error e = open_error(raw(c.header, c.data));
    EXPECT_NE(e.message.find(c.needle), std::string::npos) << c.what << ": " << e.message;
  }
  // Header length past the end of the file, absurd header length, a file shorter than 8 bytes.
  EXPECT_NE(open_error(raw("{}", 0, 1000)).message.find("past the end"), std::string::npos);
  EXPECT_EQ(open_error(raw("{}", 0, 1ull << 40)).kind, inf::ErrorKind::TooLarge);
  {
    std::ofstream(dir_ / "short.safetensors") << "abc";
    EXPECT_NE(open_error(dir_ / "short.safetensors").message.find("too short"), std::string::npos);
  }
  EXPECT_EQ(open_error(dir_ / "absent.safetensors").kind, inf::ErrorKind::NotFound);
}

TEST_F(Safetensors, TruncatedCopiesOfARealFileAreAllRejected) {
  std::vector<float> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const fs::path p = dir_ / "full.safetensors";
  ASSERT_TRUE(inf::write_safetensors(p, {{"a", {10, 50}, v.data(), inf::DType::F32}, {"b", {500}, v.data() + 500, inf::DType::BF16}}).ok());
  std::ifstream in(p, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (std::size_t keep : {std::size_t{0}, std::size_t{7}, std::size_t{8}, std::size_t{50}, bytes.size() / 2, bytes.size() - 1}) {
    const fs::path cut = dir_ / ("cut" + std::to_string(keep));
    std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
    EXPECT_FALSE(inf::SafetensorsFile::open(cut).ok()) << "a file cut to " << keep << " bytes was accepted";
  }
}

}  // namespace
