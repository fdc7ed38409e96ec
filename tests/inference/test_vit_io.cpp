// Loading and saving Hugging Face folders (round trips, strict names and shapes), batches,
// and preprocessing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "hilum/inference/overlay.hpp"
#include "random_vit.hpp"
#include "temp_dir_test.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;

namespace {

inf::ViTConfig tiny_config() {
  inf::ViTConfig c;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.intermediate_size = 32;
  c.image_size = 16;
  c.patch_size = 4;
  c.num_channels = 3;
  c.labels = {"Effusion", "Nodule", "No Finding"};
  c.problem_type = "multi_label_classification";
  c.input_height = c.input_width = 16;
  return c;
}

inf::ViTModel random_model(const inf::ViTConfig& c, unsigned seed = 7) {
  const inf::ViTWeights w = hilum::test::random_vit_weights(c, seed, 0.1f);
  auto m = inf::ViTModel::from_weights(c, w);
  EXPECT_TRUE(m.ok());
  return std::move(m.value());
}

inf::Image random_image(const inf::ViTConfig& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  inf::Image im{c.num_channels, c.image_size, c.image_size, {}};
  im.data.resize(static_cast<std::size_t>(c.num_channels) * c.image_size * c.image_size);
  for (auto& v : im.data) v = n(rng);
  return im;
}

class ModelIo : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
  }
};

TEST_F(ModelIo, SaveAndLoadGiveTheSameModel) {
  const auto model = random_model(tiny_config());
  ASSERT_TRUE(model.save(dir_ / "m").ok());
  EXPECT_TRUE(fs::exists(dir_ / "m" / "config.json"));
  EXPECT_TRUE(fs::exists(dir_ / "m" / "preprocessor_config.json"));
  auto loaded = inf::ViTModel::load(dir_ / "m");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->config().labels, tiny_config().labels);
  EXPECT_TRUE(loaded->config().multi_label());
  const auto im = random_image(tiny_config(), 1);
  auto a = model.forward({im});
  auto b = loaded->forward({im});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->logits, b->logits);  // F32 round trip is exact
  for (Eigen::Index k = 0; k < a->probabilities.cols(); ++k) {
    EXPECT_GT(a->probabilities(0, k), 0.0f);
    EXPECT_LT(a->probabilities(0, k), 1.0f);
  }

  // BF16 weights: close, not equal (the weights were rounded to 8 bits of mantissa).
  ASSERT_TRUE(model.save(dir_ / "bf16", inf::DType::BF16).ok());
  EXPECT_LT(fs::file_size(dir_ / "bf16" / "model.safetensors"), fs::file_size(dir_ / "m" / "model.safetensors") * 6 / 10);
  auto half = inf::ViTModel::load(dir_ / "bf16");
  ASSERT_TRUE(half.ok()) << half.error().message;
  auto c = half->forward({im});
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->logits, c->logits);
  EXPECT_LT((a->probabilities - c->probabilities).cwiseAbs().maxCoeff(), 2e-2f);
}

TEST_F(ModelIo, ABatchGivesTheSameAnswersAsSingleImages) {
  const auto model = random_model(tiny_config());
  std::vector<inf::Image> batch;
  for (unsigned s = 0; s < 5; ++s) batch.push_back(random_image(tiny_config(), s));
  auto all = model.forward(batch);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->logits.rows(), 5);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto one = model.forward({batch[i]});
    ASSERT_TRUE(one.ok());
    // Same arithmetic up to the GEMM's blocking of the final layer (last-bit differences).
    EXPECT_LT((one->logits.row(0) - all->logits.row(static_cast<Eigen::Index>(i))).cwiseAbs().maxCoeff(), 1e-5f) << "image " << i;
  }
  // Softmax for single-label problems sums to one.
  auto cfg = tiny_config();
  cfg.problem_type = "single_label_classification";
  auto single = random_model(cfg).forward(batch);
  ASSERT_TRUE(single.ok());
  for (Eigen::Index i = 0; i < single->probabilities.rows(); ++i) EXPECT_NEAR(single->probabilities.row(i).sum(), 1.0f, 1e-5f);
}

TEST_F(ModelIo, RejectsImagesThatDoNotFit) {
  const auto model = random_model(tiny_config());
  inf::Image wrong_channels{1, 16, 16, std::vector<float>(256, 0.0f)};
  EXPECT_FALSE(model.forward({wrong_channels}).ok());
  inf::Image not_divisible{3, 18, 16, std::vector<float>(3 * 18 * 16, 0.0f)};
  EXPECT_FALSE(model.forward({not_divisible}).ok());
  inf::Image short_data{3, 16, 16, std::vector<float>(10, 0.0f)};
  EXPECT_FALSE(model.forward({short_data}).ok());
  EXPECT_FALSE(model.forward({}).ok());
}

// The loader is strict: a missing tensor, an unexpected one, or a wrong shape names the tensor.
TEST_F(ModelIo, LoaderRejectsMissingUnexpectedAndMisshapenTensors) {
  const auto model = random_model(tiny_config());
  ASSERT_TRUE(model.save(dir_ / "m").ok());
  auto file = inf::SafetensorsFile::open(dir_ / "m" / "model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<std::vector<float>> keep;
  std::vector<inf::TensorToWrite> all;
  for (const auto& t : file->tensors()) {
    keep.push_back(file->read_f32(t.name).value());
    all.push_back({t.name, t.shape, nullptr, inf::DType::F32});
  }
  for (std::size_t i = 0; i < all.size(); ++i) all[i].data = keep[i].data();
  const auto write_variant = [&](const std::string& name, std::vector<inf::TensorToWrite> tensors) {
    fs::create_directories(dir_ / name);
    fs::copy_file(dir_ / "m" / "config.json", dir_ / name / "config.json");
    EXPECT_TRUE(inf::write_safetensors(dir_ / name / "model.safetensors", tensors).ok());
    return dir_ / name;
  };
  {
    auto t = all;
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& x) { return x.name == "vit.encoder.layer.1.output.dense.bias"; }), t.end());
    auto r = inf::ViTModel::load(write_variant("missing", t));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("missing tensor vit.encoder.layer.1.output.dense.bias"), std::string::npos) << r.error().message;
  }
  {
    auto t = all;
    std::vector<float> extra(16, 0.0f);
    t.push_back({"vit.encoder.layer.7.output.dense.bias", {16}, extra.data(), inf::DType::F32});
    auto r = inf::ViTModel::load(write_variant("unexpected", t));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("unexpected tensor vit.encoder.layer.7"), std::string::npos) << r.error().message;
  }
  {
    auto t = all;
    for (auto& x : t) {
      if (x.name == "vit.encoder.layer.0.intermediate.dense.weight") x.shape = {16, 32};  // transposed
    }
    auto r = inf::ViTModel::load(write_variant("shape", t));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("intermediate.dense.weight has shape [16, 32], expected [32, 16]"), std::string::npos) << r.error().message;
  }
  {
    fs::create_directories(dir_ / "cfg");
    fs::copy_file(dir_ / "m" / "model.safetensors", dir_ / "cfg" / "model.safetensors");
    std::ofstream(dir_ / "cfg" / "config.json") << R"({"model_type":"vit","hidden_size":16,"num_attention_heads":3})";
    auto r = inf::ViTModel::load(dir_ / "cfg");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("inconsistent"), std::string::npos) << r.error().message;
    std::ofstream(dir_ / "cfg" / "config.json") << R"({"model_type":"bert"})";
    auto bert = inf::ViTModel::load(dir_ / "cfg");
    ASSERT_FALSE(bert.ok());
    EXPECT_EQ(bert.error().kind, inf::ErrorKind::Unsupported);
  }
  EXPECT_EQ(inf::ViTModel::load(dir_ / "nowhere").error().kind, inf::ErrorKind::NotFound);
}

// Issue 16, defect 5: config.json is bounded (size, nesting) before it is parsed, and what was read
// is kept as bytes, never re-serialised from a parsed tree (which a deep nesting made overflow the stack).
TEST_F(ModelIo, ConfigIsBoundedBeforeParsingAndKeptAsRead) {
  const auto model = random_model(tiny_config());
  ASSERT_TRUE(model.save(dir_ / "m").ok());
  const auto write_config = [&](const std::string& text) {
    std::ofstream(dir_ / "m" / "config.json", std::ios::binary | std::ios::trunc) << text;
  };
  const std::string base = R"({"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
 "intermediate_size": 32, "image_size": 16, "patch_size": 4, "id2label": {"0": "Effusion", "1": "Nodule", "2": "No Finding"})";
  const auto nested = [](int depth) { return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']'); };

  // Deep nesting (the reproducer: 100,000 levels in 200 KB) is refused with a reason, quickly and without a crash.
  for (const int depth : {65, 100000}) {
    write_config(base + R"(, "extra": )" + nested(depth) + "}");
    auto r = inf::read_config(dir_ / "m");
    ASSERT_FALSE(r.ok()) << "depth " << depth;
    EXPECT_NE(r.error().message.find("more than 64 levels deep"), std::string::npos) << r.error().message;
  }
  // Brackets inside strings are text, not nesting.
  write_config(base + R"(, "note": ")" + std::string(200, '[') + R"(\"[{"})");
  EXPECT_TRUE(inf::read_config(dir_ / "m").ok());
  // More than 1 MiB is refused before parsing.
  write_config(base + R"(, "note": ")" + std::string(std::size_t{1} << 20, 'x') + R"("})");
  auto big = inf::read_config(dir_ / "m");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message.find("larger than 1048576 bytes"), std::string::npos) << big.error().message;

  // Within the bounds, the bytes are kept as read (a dump would have rewritten 1.10, the order and the spacing),
  // and unknown fields survive a save.
  const std::string kept = base + R"(, "custom": {"b": 1.10, "a": )" + nested(60) + "}}\n";
  write_config(kept);
  auto c = inf::read_config(dir_ / "m");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->original_json, kept);
  auto loaded = inf::ViTModel::load(dir_ / "m");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_TRUE(loaded->save(dir_ / "again").ok());
  auto again = inf::read_config(dir_ / "again");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_NE(again->original_json.find(R"("custom")"), std::string::npos);
  EXPECT_EQ(again->labels, tiny_config().labels);
}

// Issue 16, defect 6: every number of config.json and preprocessor_config.json is checked at load
// against its range (never truncated, wrapped or cast with overflow), and the message gives the range.
TEST_F(ModelIo, EveryConfigNumberIsCheckedAgainstItsRange) {
  const auto model = random_model(tiny_config());
  ASSERT_TRUE(model.save(dir_ / "m").ok());
  const std::string cfg_head = R"({"model_type": "vit", "num_hidden_layers": 2, "intermediate_size": 32, "patch_size": 4, )";
  const std::string good_cfg = cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 16})";
  const auto load_with = [&](const std::string& config, const std::string& preprocessor) {
    std::ofstream(dir_ / "m" / "config.json", std::ios::trunc) << config;
    std::ofstream(dir_ / "m" / "preprocessor_config.json", std::ios::trunc) << preprocessor;
    return inf::ViTModel::load(dir_ / "m");
  };
  const std::string good_pre = R"({"size": {"height": 16, "width": 16}})";
  {
    auto ok = load_with(good_cfg, good_pre);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
  }
  const struct {
    std::string config, preprocessor, message;
  } cases[] = {
      {cfg_head + R"("hidden_size": 4294967304, "num_attention_heads": 2, "image_size": 16})", good_pre,
       "config.json: hidden_size must be an integer in 1..16384, got 4294967304"},
      {cfg_head + R"("hidden_size": 1e30, "num_attention_heads": 2, "image_size": 16})", good_pre,
       "config.json: hidden_size must be an integer in 1..16384, got 1e+30"},
      {cfg_head + R"("hidden_size": 16.5, "num_attention_heads": 2, "image_size": 16})", good_pre, "hidden_size must be an integer in 1..16384, got 16.5"},
      {cfg_head + R"("hidden_size": "16", "num_attention_heads": 2, "image_size": 16})", good_pre, "hidden_size must be an integer in 1..16384, got \"16\""},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": -2, "image_size": 16})", good_pre, "num_attention_heads must be an integer in 1..256, got -2"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 100000})", good_pre, "image_size must be an integer in 16..4096, got 100000"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 18})", good_pre, "patch_size 4 does not divide image_size 18"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 3, "image_size": 16})", good_pre, "num_attention_heads 3 does not divide hidden_size 16"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 16, "layer_norm_eps": 0})", good_pre,
       "layer_norm_eps must be a number in (0, 1], got 0"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 16, "layer_norm_eps": 1e400})", good_pre, "is not valid JSON"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 16, "qkv_bias": 1})", good_pre, "qkv_bias must be true or false, got 1"},
      {cfg_head + R"("hidden_size": 16, "num_attention_heads": 2, "image_size": 16, "id2label": {"x": "A"}})", good_pre,
       "id2label's keys must be integers in 0..99999, got \"x\""},
      {good_cfg, R"({"size": -5})", "preprocessor_config.json: size must be an integer in 16..4096, got -5"},
      {good_cfg, R"({"size": 100000})", "preprocessor_config.json: size must be an integer in 16..4096, got 100000"},
      {good_cfg, R"({"size": {"height": 16, "width": 18}})", "size.width must be divisible by patch_size 4, got 18"},
      {good_cfg, R"({"size": {"height": 4294967312, "width": 16}})", "size.height must be an integer in 16..4096, got 4294967312"},
      {good_cfg, R"({"size": "big"})", "size must be an integer or"},
      {good_cfg, R"({"image_std": [0.5, 0, 0.5]})", "image_std[1] must be a number in 1e-06..1000, got 0"},
      {good_cfg, R"({"image_std": [0.5, 0.5]})", "image_std must be a number or an array of 1 or 3 numbers"},
      {good_cfg, R"({"image_mean": [0.5, 1e300, 0.5]})", "image_mean[1] must be a number in -1000..1000, got 1e+300"},
      {good_cfg, R"({"image_mean": null, "image_std": "wide"})", "image_std must be a number or an array of 1 or 3 numbers, got \"wide\""},
      // A centre crop: crop_size is the input (tiled by the patches), size what is cropped from.
      {good_cfg, R"({"do_center_crop": true, "size": 20})", "crop_size is missing while do_center_crop is true"},
      {good_cfg, R"({"do_center_crop": "yes", "size": 20, "crop_size": 16})", "do_center_crop must be true or false"},
      {good_cfg, R"({"do_center_crop": true, "size": 20, "crop_size": 18})", "crop_size must be divisible by patch_size 4, got 18"},
      {good_cfg, R"({"do_center_crop": true, "size": 12, "crop_size": 16})", "size must be an integer in 16..4096, got 12"},
      {good_cfg, R"({"do_center_crop": true, "size": {"height": 20, "width": 17}, "crop_size": {"height": 16, "width": 20}})",
       "size must be at least crop_size (16 x 20) to crop it, got 20 x 17"},
  };
  for (const auto& k : cases) {
    auto r = load_with(k.config, k.preprocessor);
    ASSERT_FALSE(r.ok()) << k.config << " / " << k.preprocessor;
    EXPECT_NE(r.error().message.find(k.message), std::string::npos) << r.error().message << "\n  expected: " << k.message;
  }
  // Integral floats are integers; one mean or std serves every channel.
  auto r = load_with(cfg_head + R"("hidden_size": 16.0, "num_attention_heads": 2, "image_size": 16})", R"({"size": 32, "image_std": [0.25]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->config().hidden_size, 16);
  EXPECT_EQ(r->config().input_width, 32);
  EXPECT_EQ(r->config().image_std[2], 0.25f);
  EXPECT_FALSE(r->config().centre_crop());
  // Hugging Face's resize-then-crop (DeiTImageProcessor): the input is crop_size, and the size
  // need not be tiled by the patches.
  r = load_with(good_cfg, R"({"do_center_crop": true, "size": {"height": 19, "width": 21}, "crop_size": 16})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->config().input_height, 16);
  EXPECT_EQ(r->config().input_width, 16);
  EXPECT_EQ(r->config().resize_height, 19);
  EXPECT_EQ(r->config().resize_width, 21);
  EXPECT_TRUE(r->config().centre_crop());
  // do_center_crop false: crop_size means nothing, size is the input.
  r = load_with(good_cfg, R"({"do_center_crop": false, "size": 20, "crop_size": 16})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->config().input_width, 20);
  EXPECT_FALSE(r->config().centre_crop());
}

// A model that crops the centre writes it as Hugging Face does (resize to `size`, keep `crop_size`)
// and reads back the same geometry; one without a crop writes none.
TEST_F(ModelIo, ACentreCropIsSavedAsHuggingFaceWritesIt) {
  auto c = tiny_config();
  c.resize_height = 19;
  c.resize_width = 23;
  const auto model = random_model(c);
  ASSERT_TRUE(model.save(dir_ / "m").ok());
  std::ifstream in(dir_ / "m" / "preprocessor_config.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"do_center_crop\": true"), std::string::npos) << text;
  EXPECT_NE(text.find("DeiTImageProcessor"), std::string::npos) << text;
  auto loaded = inf::ViTModel::load(dir_ / "m");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->config().input_height, 16);
  EXPECT_EQ(loaded->config().input_width, 16);
  EXPECT_EQ(loaded->config().resize_height, 19);
  EXPECT_EQ(loaded->config().resize_width, 23);
  ASSERT_TRUE(random_model(tiny_config()).save(dir_ / "plain").ok());
  std::ifstream plain(dir_ / "plain" / "preprocessor_config.json");
  const std::string plain_text((std::istreambuf_iterator<char>(plain)), std::istreambuf_iterator<char>());
  EXPECT_EQ(plain_text.find("crop"), std::string::npos) << plain_text;
  auto reloaded = inf::ViTModel::load(dir_ / "plain");
  ASSERT_TRUE(reloaded.ok());
  EXPECT_FALSE(reloaded->config().centre_crop());
}

TEST(Preprocess, NormalisesAndResizesWithoutAliasing) {
  auto c = tiny_config();
  c.input_width = c.input_height = 16;
  c.image_mean = {0.5f, 0.4f, 0.3f};
  c.image_std = {0.5f, 0.2f, 0.1f};
  // A 1-pixel checkerboard shrunk 8x must come out flat grey (a point sampler would alias).
  const int W = 128, H = 128;
  std::vector<float> checker(static_cast<std::size_t>(W * H));
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) checker[static_cast<std::size_t>(y * W + x)] = static_cast<float>((x + y) % 2);
  const inf::Image im = inf::preprocess(checker.data(), W, H, c);
  ASSERT_EQ(im.channels, 3);
  ASSERT_EQ(im.height, 16);
  ASSERT_EQ(im.width, 16);
  for (int ch = 0; ch < 3; ++ch) {
    const float expected = (0.5f - c.image_mean[static_cast<std::size_t>(ch)]) / c.image_std[static_cast<std::size_t>(ch)];
    for (int i = 0; i < 256; ++i) EXPECT_NEAR(im.data[static_cast<std::size_t>(ch * 256 + i)], expected, 0.02f / c.image_std[static_cast<std::size_t>(ch)]);
  }
  // A horizontal ramp keeps its mean and its direction.
  std::vector<float> ramp(static_cast<std::size_t>(W * H));
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) ramp[static_cast<std::size_t>(y * W + x)] = static_cast<float>(x) / (W - 1);
  const auto small = inf::resize_antialiased(ramp.data(), W, H, 16, 8);
  ASSERT_EQ(small.size(), 128u);
  double mean = 0;
  for (float v : small) mean += v;
  EXPECT_NEAR(mean / 128.0, 0.5, 0.01);
  EXPECT_LT(small[0], small[15]);
  EXPECT_NEAR(small[0], small[16], 1e-6);  // rows identical
}

// The centre crop is Hugging Face's resize-then-crop done in one pass: the model's view of an
// image equals resizing all of it to `size` and cutting (size - crop) / 2 (rounded down) from the
// top and the left, to rounding; and the window says which of the image's pixels that is.
TEST(Preprocess, ACentreCropIsResizeThenCropInOnePass) {
  auto c = tiny_config();
  c.input_width = 16;
  c.input_height = 12;
  c.resize_width = 19;   // 3 columns dropped: 1 left, 2 right
  c.resize_height = 15;  // 3 rows: 1 top, 2 bottom
  const int W = 57, H = 45;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> image(static_cast<std::size_t>(W * H));
  for (auto& v : image) v = u(rng);
  const auto view = inf::model_view(image.data(), W, H, c);
  ASSERT_EQ(view.size(), static_cast<std::size_t>(16 * 12));
  const auto resized = inf::resize_antialiased(image.data(), W, H, 19, 15);
  double worst = 0.0;
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 16; ++x) {
      worst = std::max(worst, static_cast<double>(std::abs(view[static_cast<std::size_t>(y * 16 + x)] -
                                                            resized[static_cast<std::size_t>((y + 1) * 19 + x + 1)])));
    }
  EXPECT_LT(worst, 1e-5);
  const inf::Window w = inf::model_window(W, H, c);
  EXPECT_NEAR(w.x, 1.0 * W / 19, 1e-9);
  EXPECT_NEAR(w.width, 16.0 * W / 19, 1e-9);
  EXPECT_NEAR(w.y, 1.0 * H / 15, 1e-9);
  EXPECT_NEAR(w.height, 12.0 * H / 15, 1e-9);
  // It is not the whole image resized: the crop changes what the model sees.
  const auto whole = inf::resize_antialiased(image.data(), W, H, 16, 12);
  double differs = 0.0;
  for (std::size_t i = 0; i < whole.size(); ++i) differs = std::max(differs, static_cast<double>(std::abs(whole[i] - view[i])));
  EXPECT_GT(differs, 0.05);
  // Without a crop the window is the image and the view the plain resize.
  const auto plain = tiny_config();
  const inf::Window all = inf::model_window(W, H, plain);
  EXPECT_EQ(all.x, 0.0);
  EXPECT_EQ(all.width, static_cast<double>(W));
  EXPECT_EQ(inf::model_view(image.data(), W, H, plain), inf::resize_antialiased(image.data(), W, H, 16, 16));
}

}  // namespace

// The map of a model that saw a centre crop covers that crop only: nothing outside it, and inside
// it the map brought to the crop's size.
TEST(Overlay, AMapCoversTheWindowTheModelSaw) {
  inf::Matrix grid(2, 2);
  grid << 1.0f, 0.5f, 0.25f, 0.75f;
  const int w = 40, h = 30;
  const inf::Window window{4.0, 3.0, 32.0, 24.0};
  const auto map = inf::upsample_map(grid, w, h, window);
  const auto inner = inf::upsample_map(grid, 32, 24);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float v = map[static_cast<std::size_t>(y * w + x)];
      if (x < 4 || x >= 36 || y < 3 || y >= 27) EXPECT_EQ(v, 0.0f) << x << "," << y;
      else EXPECT_EQ(v, inner[static_cast<std::size_t>((y - 3) * 32 + (x - 4))]) << x << "," << y;
    }
  // The layer is transparent outside the window; a whole-image window is the plain map.
  const auto layer = inf::attention_layer(grid, w, h, inf::ColourMap::Jet, window);
  EXPECT_EQ(layer.rgba[3], 0);
  EXPECT_GT(layer.rgba[static_cast<std::size_t>((3 * w + 4) * 4 + 3)], 200);
  EXPECT_EQ(inf::upsample_map(grid, w, h, inf::Window{0.0, 0.0, 40.0, 30.0}), inf::upsample_map(grid, w, h));
  const auto shares = inf::scaled_window(inf::Window{0.1, 0.1, 0.8, 0.8}, w, h);
  EXPECT_NEAR(shares.x, 4.0, 1e-12);
  EXPECT_NEAR(shares.height, 24.0, 1e-12);
}

TEST(Overlay, LayerIsTheMapPremultipliedAndTheOverlayIsItsComposite) {
  inf::Matrix grid(2, 3);
  grid << 0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 0.1f;
  const int w = 30, h = 20;
  const auto alpha = inf::upsample_map(grid, w, h);
  const auto layer = inf::attention_layer(grid, w, h);
  ASSERT_EQ(layer.rgba.size(), static_cast<std::size_t>(w * h * 4));
  std::vector<float> grey(static_cast<std::size_t>(w * h));
  for (std::size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<float>(i % 7) / 6.0f;
  const auto plain = inf::attention_overlay(grey.data(), w, h, grid, 0.0f);
  const auto half = inf::attention_overlay(grey.data(), w, h, grid, 0.5f);
  int coloured = 0;
  for (std::size_t i = 0; i < grey.size(); ++i) {
    const int a = layer.rgba[i * 4 + 3];
    EXPECT_NEAR(a, alpha[i] * 255.0f, 0.5f + 1e-3f);
    for (std::size_t c = 0; c < 3; ++c) {
      EXPECT_LE(layer.rgba[i * 4 + c], a + 1);  // premultiplied: colour <= alpha
      const float g = grey[i] * 255.0f;
      EXPECT_NEAR(plain.rgb[i * 3 + c], g, 0.5f + 1e-3f);  // opacity 0: the image as it is
      const float mix = (1.0f - 0.5f * static_cast<float>(a) / 255.0f) * g + 0.5f * static_cast<float>(layer.rgba[i * 4 + c]);
      EXPECT_NEAR(half.rgb[i * 3 + c], mix, 0.5f + 1e-3f);
    }
    if (half.rgb[i * 3] != plain.rgb[i * 3] || half.rgb[i * 3 + 2] != plain.rgb[i * 3 + 2]) ++coloured;
  }
  EXPECT_GT(coloured, w * h / 2);  // the map shows where it is high
}

// Issue 18: ForwardOptions::threads limits the OpenMP team of one call (the classifier's pipeline
// runs the model on one thread while its workers decode), gives the same answer, and leaves the
// caller's team size as it was.
TEST(Forward, ThreadsOptionGivesTheSameAnswerAndRestoresTheTeamSize) {
  const auto c = tiny_config();
  const auto model = random_model(c);
  const std::vector<inf::Image> batch = {random_image(c, 1), random_image(c, 2), random_image(c, 3)};
#ifdef _OPENMP
  omp_set_num_threads(2);
  const int before = omp_get_max_threads();
#endif
  inf::ForwardOptions keep;
  keep.keep_attentions = true;
  keep.keep_hidden_states = true;
  auto all = model.forward(batch, keep);
  inf::ForwardOptions one_thread = keep;
  one_thread.threads = 1;
  auto one = model.forward(batch, one_thread);
  ASSERT_TRUE(all.ok() && one.ok());
  EXPECT_EQ(all->probabilities, one->probabilities);
  EXPECT_EQ(all->embeddings, one->embeddings);
  // Every stage alike, bit for bit: the threads share the work, never the order of a sum.
  EXPECT_EQ(all->hidden_states, one->hidden_states);
  EXPECT_EQ(all->attentions, one->attentions);
  ASSERT_EQ(all->hidden_states.size(), batch.size());
  EXPECT_EQ(all->hidden_states[0].size(), static_cast<std::size_t>(c.num_layers) + 2);
  ASSERT_EQ(all->attentions.size(), batch.size());
  EXPECT_EQ(all->attentions[0].size(), static_cast<std::size_t>(c.num_layers));
  // The kept stages are those of a forward without them.
  auto plain = model.forward(batch);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->probabilities, all->probabilities);
#ifdef _OPENMP
  EXPECT_EQ(omp_get_max_threads(), before);
#endif
}
