// Masked-autoencoder pre-training (see mae.hpp): the encoder on the kept patches, the light decoder,
// the masked, per-patch normalised MSE, and the backward pass into both. The blocks are the
// classifier's (engine.hpp); the MAE-specific steps are ops (ops.hpp) checked by finite
// differences. Templated on the scalar type like the classifier's engine: float for training,
// double for the finite-difference tests (ops::mae_forward_double).
#include "hilum/training/mae.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

#include "engine.hpp"
#include "hilum/inference/safetensors.hpp"
#include "hilum/training/ops.hpp"

namespace hilum::training {

namespace mae_engine {

using namespace engine;

template <typename T>
struct State {
  bool valid = false;
  bool used = false;
  TrainOptions options;
  Index B = 0, N = 0, K = 0;  // images, patches per image, kept per image
  int gh = 0, gw = 0;
  std::vector<std::vector<int>> keep;
  Mat<T> patches_kept;           // (B*K) x (C*P*P), the patch embedding's input
  std::vector<BlockSave<T>> enc;  // encoder blocks (x = each block's input)
  Mat<T> enc_out;                // last encoder block's output, (B*(1+K)) x D
  Vec<T> meanE, rstdE;
  Mat<T> enc_ln;                 // after the encoder's final LayerNorm
  std::vector<BlockSave<T>> dec;  // decoder blocks
  Mat<T> dec_out;                // (B*(1+N)) x Dd
  Vec<T> meanD, rstdD;
  Mat<T> dec_ln;                 // decoder LayerNorm output on the patch rows, (B*N) x Dd
  Mat<T> pred;                   // (B*N) x (P*P*C)
  Mat<T> dpred;                  // d(loss)/d(pred), from the forward
  Dims enc_dims, dec_dims;
  Work<T> enc_work, dec_work;
  Mat<T> embedded, positions, dec_positions, y, full, target;
  Mat<T> dx, dy, dlnE, dfull, dlnp, demb, dpos;

  [[nodiscard]] std::size_t bytes() const {
    if (!valid) return 0;
    std::size_t n = 0;
    for (const Mat<T>* m : {&patches_kept, &enc_out, &enc_ln, &dec_out, &dec_ln, &pred, &dpred}) n += static_cast<std::size_t>(m->size());
    n *= sizeof(T);
    for (const auto& b : enc) n += b.bytes(true);
    for (const auto& b : dec) n += b.bytes(true);
    return n;
  }
};

template <typename W>
void check(const ViTConfig& c, const W& enc, const MaeConfig& mae, const W& dec, const std::vector<Image>& batch,
           const std::vector<std::vector<int>>& keep, const TrainOptions& o) {
  if (batch.empty()) throw std::invalid_argument("mae_forward: an empty batch");
  if (o.first_trainable_block != 0) throw std::invalid_argument("mae_forward: the encoder is trained whole (first_trainable_block 0)");
  if (static_cast<int>(enc.blocks.size()) != c.num_layers) throw std::invalid_argument("mae_forward: the encoder does not have config.num_layers blocks");
  if (static_cast<int>(dec.blocks.size()) != mae.decoder_layers || dec.patch_w.rows() != mae.decoder_hidden ||
      dec.patch_w.cols() != c.hidden_size || !dec.has_classifier ||
      dec.classifier.w.rows() != static_cast<Index>(c.num_channels) * c.patch_size * c.patch_size) {
    throw std::invalid_argument("mae_forward: the decoder does not match the MaeConfig and the encoder");
  }
  const int P = c.patch_size;
  for (const Image& im : batch) {
    if (im.channels != c.num_channels || im.height <= 0 || im.width <= 0 || im.height % P != 0 || im.width % P != 0 ||
        im.data.size() != static_cast<std::size_t>(im.channels) * im.height * im.width || im.height != batch[0].height ||
        im.width != batch[0].width) {
      throw std::invalid_argument("mae_forward: images must be " + std::to_string(c.num_channels) + " x H x W with H and W multiples of " +
                                  std::to_string(P) + ", all of the same size");
    }
  }
  const int N = (batch[0].height / P) * (batch[0].width / P);
  if (keep.size() != batch.size()) throw std::invalid_argument("mae_forward: one kept-patch list per image");
  for (const auto& k : keep) {
    if (k.empty() || k.size() != keep[0].size() || static_cast<int>(k.size()) > N)
      throw std::invalid_argument("mae_forward: every image must keep the same number (>= 1) of patches");
    std::vector<char> seen(static_cast<std::size_t>(N), 0);
    for (int n : k) {
      if (n < 0 || n >= N || seen[static_cast<std::size_t>(n)] != 0) throw std::invalid_argument("mae_forward: kept patch indices must be distinct and in [0, patches)");
      seen[static_cast<std::size_t>(n)] = 1;
    }
  }
}

template <typename T, typename W>
double forward(const ViTConfig& c, const W& enc, const MaeConfig& mae, const W& dec, const std::vector<Image>& batch,
               const std::vector<std::vector<int>>& keep, const TrainOptions& o, State<T>& st) {
  check(c, enc, mae, dec, batch, keep, o);
  st.valid = false;
  st.options = o;
  st.keep = keep;
  const int P = c.patch_size;
  st.gh = batch[0].height / P;
  st.gw = batch[0].width / P;
  st.B = static_cast<Index>(batch.size());
  st.N = static_cast<Index>(st.gh) * st.gw;
  st.K = static_cast<Index>(keep[0].size());
  const Index Tk = st.K + 1, Tn = st.N + 1;
  // Encoder: the kept patches only.
  {
    Mat<T>& all = st.enc_work.patches;
    unfold_patches<T>(batch, P, all);
    gather_kept<T>(all, keep, st.N, st.patches_kept);
    all.resize(0, 0);
  }
  linear_forward<T>(st.patches_kept, enc.patch_w, enc.patch_b, st.embedded);
  positions_forward<T>(enc.position, st.gh, st.gw, st.positions);
  const int L = c.num_layers;
  st.enc.resize(static_cast<std::size_t>(L));
  Mat<T>& x0 = L > 0 ? st.enc[0].x : st.enc_out;
  masked_tokens_forward<T>(st.embedded, enc.cls_token, st.positions, keep, x0);
  st.enc_dims = dims(c, st.B, Tk, o.precision);
  const Dims& de = st.enc_dims;
  for (int i = 0; i < L; ++i) {
    auto& s = st.enc[static_cast<std::size_t>(i)];
    Mat<T>& out = i + 1 < L ? st.enc[static_cast<std::size_t>(i + 1)].x : st.enc_out;
    block_forward<T>(de, enc.blocks[static_cast<std::size_t>(i)], i, o, s.x, s, st.enc_work, out);
  }
  layernorm_forward<T>(st.enc_out, enc.final_ln.gamma, enc.final_ln.beta, c.layer_norm_eps, st.enc_ln, st.meanE, st.rstdE);
  // Decoder: every patch, the masked ones as the mask token.
  linear_forward<T>(st.enc_ln, dec.patch_w, dec.patch_b, st.y, o.precision);
  st.dec_positions = sincos_positions(mae.decoder_hidden, st.gh, st.gw).template cast<T>();
  const int Ld = mae.decoder_layers;
  st.dec.resize(static_cast<std::size_t>(Ld));
  Mat<T>& d0 = Ld > 0 ? st.dec[0].x : st.dec_out;
  unshuffle_forward<T>(st.y, dec.cls_token, st.dec_positions, keep, d0);
  const ViTConfig dc = decoder_config(c, mae);
  st.dec_dims = dims(dc, st.B, Tn, o.precision);
  const Dims& dd = st.dec_dims;
  const TrainOptions plain;  // no drop-path in the decoder
  for (int i = 0; i < Ld; ++i) {
    auto& s = st.dec[static_cast<std::size_t>(i)];
    Mat<T>& out = i + 1 < Ld ? st.dec[static_cast<std::size_t>(i + 1)].x : st.dec_out;
    block_forward<T>(dd, dec.blocks[static_cast<std::size_t>(i)], i, plain, s.x, s, st.dec_work, out);
  }
  // The decoder LayerNorm and the prediction on the patch rows (the CLS row is dropped).
  layernorm_forward<T>(st.dec_out, dec.final_ln.gamma, dec.final_ln.beta, c.layer_norm_eps, st.full, st.meanD, st.rstdD);
  st.dec_ln.resize(st.B * st.N, mae.decoder_hidden);
  for (Index b = 0; b < st.B; ++b) st.dec_ln.middleRows(b * st.N, st.N) = st.full.middleRows(b * Tn + 1, st.N);
  linear_forward<T>(st.dec_ln, dec.classifier.w, dec.classifier.b, st.pred, o.precision);
  patch_targets<T>(batch, P, mae.norm_pix_loss, st.target);
  std::vector<char> masked(static_cast<std::size_t>(st.B * st.N), 1);
  for (Index b = 0; b < st.B; ++b)
    for (int n : keep[static_cast<std::size_t>(b)]) masked[static_cast<std::size_t>(b * st.N + n)] = 0;
  const double loss = masked_mse<T>(st.pred, st.target, masked, st.dpred);
  st.valid = true;
  st.used = false;
  return loss;
}

template <typename T, typename W>
void backward(const ViTConfig& c, const W& enc, const W& dec, State<T>& st, W& g, W& gd) {
  if (!st.valid) throw std::logic_error("mae_backward: no forward on this tape");
  if (st.used) throw std::logic_error("mae_backward: already ran on this forward (run forward again)");
  if (g.blocks.size() != enc.blocks.size() || gd.blocks.size() != dec.blocks.size())
    throw std::invalid_argument("mae_backward: gradients must have the weights' shapes (zeros_like)");
  st.used = true;
  const TrainOptions& o = st.options;
  const Index Tk = st.K + 1, Tn = st.N + 1, Dd = dec.patch_w.rows(), D = c.hidden_size;
  // Prediction and the decoder LayerNorm (the CLS row gets no gradient).
  linear_backward<T>(st.dec_ln, dec.classifier.w, st.dpred, &st.dlnp, false, &gd.classifier.w, &gd.classifier.b, o.precision);
  st.dfull.setZero(st.B * Tn, Dd);
  for (Index b = 0; b < st.B; ++b) st.dfull.middleRows(b * Tn + 1, st.N) = st.dlnp.middleRows(b * st.N, st.N);
  st.dx.setZero(st.B * Tn, Dd);
  layernorm_backward<T>(st.dec_out, st.meanD, st.rstdD, dec.final_ln.gamma, st.dfull, st.dx, &gd.final_ln.gamma, &gd.final_ln.beta);
  const int Ld = static_cast<int>(dec.blocks.size());
  for (int i = Ld - 1; i >= 0; --i) {
    const auto& s = st.dec[static_cast<std::size_t>(i)];
    block_backward<T>(st.dec_dims, dec.blocks[static_cast<std::size_t>(i)], s, s.x, st.dec_work, gd.blocks[static_cast<std::size_t>(i)], st.dx);
  }
  unshuffle_backward<T>(st.dx, st.keep, Tn, st.dy, &gd.cls_token);
  // Decoder embedding, then the encoder's final LayerNorm and blocks.
  linear_backward<T>(st.enc_ln, dec.patch_w, st.dy, &st.dlnE, false, &gd.patch_w, &gd.patch_b, o.precision);
  st.dx.setZero(st.B * Tk, D);
  layernorm_backward<T>(st.enc_out, st.meanE, st.rstdE, enc.final_ln.gamma, st.dlnE, st.dx, &g.final_ln.gamma, &g.final_ln.beta);
  for (int i = c.num_layers - 1; i >= 0; --i) {
    const auto& s = st.enc[static_cast<std::size_t>(i)];
    block_backward<T>(st.enc_dims, enc.blocks[static_cast<std::size_t>(i)], s, s.x, st.enc_work, g.blocks[static_cast<std::size_t>(i)], st.dx);
  }
  st.dpos.setZero(Tn, D);
  masked_tokens_backward<T>(st.dx, st.keep, &g.cls_token, &st.dpos, st.demb);
  positions_backward<T>(st.dpos, position_grid(enc.position.rows()), st.gh, st.gw, g.position);
  linear_backward<T>(st.patches_kept, enc.patch_w, st.demb, nullptr, false, &g.patch_w, &g.patch_b);
}

}  // namespace mae_engine

using Index = Eigen::Index;

// ---- Configuration, initialisation, masking ------------------------------------------------------

ViTConfig decoder_config(const ViTConfig& encoder, const MaeConfig& mae) {
  ViTConfig c = encoder;
  c.hidden_size = mae.decoder_hidden;
  c.num_layers = mae.decoder_layers;
  c.num_heads = mae.decoder_heads;
  c.intermediate_size = mae.decoder_intermediate;
  c.qkv_bias = true;
  c.labels.clear();
  return c;
}

ViTWeights initial_decoder(const ViTConfig& encoder, const MaeConfig& mae, std::uint64_t seed) {
  if (mae.decoder_hidden <= 0 || mae.decoder_hidden % 4 != 0 || mae.decoder_heads <= 0 || mae.decoder_hidden % mae.decoder_heads != 0 ||
      mae.decoder_layers < 0 || mae.decoder_intermediate <= 0) {
    throw std::invalid_argument("initial_decoder: decoder_hidden must be a multiple of 4 and of decoder_heads");
  }
  std::mt19937_64 rng(seed ^ 0x6d61652d64656331ull);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const auto xavier = [&](Index out, Index in) {
    const float bound = std::sqrt(6.0f / static_cast<float>(out + in));
    Matrix m(out, in);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = bound * unit(rng);
    return m;
  };
  const auto linear = [&](Index out, Index in) { return inference::Linear{xavier(out, in), Vector::Zero(out)}; };
  const auto norm = [](Index n) { return inference::LayerNorm{Vector::Ones(n), Vector::Zero(n)}; };
  const Index Dd = mae.decoder_hidden, I = mae.decoder_intermediate;
  ViTWeights w;
  w.patch_w = xavier(Dd, encoder.hidden_size);
  w.patch_b = Vector::Zero(Dd);
  w.cls_token = Vector(Dd);
  for (Index i = 0; i < Dd; ++i) w.cls_token[i] = normal(rng);
  for (int i = 0; i < mae.decoder_layers; ++i) {
    inference::Block b;
    b.ln_before = norm(Dd);
    b.query = linear(Dd, Dd);
    b.key = linear(Dd, Dd);
    b.value = linear(Dd, Dd);
    b.attn_out = linear(Dd, Dd);
    b.ln_after = norm(Dd);
    b.fc1 = linear(I, Dd);
    b.fc2 = linear(Dd, I);
    w.blocks.push_back(std::move(b));
  }
  w.final_ln = norm(Dd);
  w.has_classifier = true;
  w.classifier = linear(static_cast<Index>(encoder.num_channels) * encoder.patch_size * encoder.patch_size, Dd);
  return w;
}

Matrix sincos_positions(int dim, int grid_h, int grid_w) {
  if (dim % 4 != 0) throw std::invalid_argument("sincos_positions: the width must be a multiple of 4");
  Matrix out = Matrix::Zero(1 + static_cast<Index>(grid_h) * grid_w, dim);
  const int quarter = dim / 4;
  for (int y = 0; y < grid_h; ++y)
    for (int x = 0; x < grid_w; ++x) {
      float* row = out.row(1 + static_cast<Index>(y) * grid_w + x).data();
      for (int half = 0; half < 2; ++half) {
        const double pos = half == 0 ? x : y;  // MAE: the first half encodes the column
        for (int k = 0; k < quarter; ++k) {
          const double omega = 1.0 / std::pow(10000.0, static_cast<double>(k) / quarter);
          row[half * 2 * quarter + k] = static_cast<float>(std::sin(pos * omega));
          row[half * 2 * quarter + quarter + k] = static_cast<float>(std::cos(pos * omega));
        }
      }
    }
  return out;
}

int kept_patch_count(int n_patches, float mask_ratio) {
  const auto k = static_cast<int>(std::floor(static_cast<double>(n_patches) * (1.0 - static_cast<double>(mask_ratio)) + 1e-9));
  return std::clamp(k, 1, std::max(1, n_patches));
}

std::vector<std::vector<int>> random_keep(int images, int n_patches, float mask_ratio, std::uint64_t seed) {
  const int k = kept_patch_count(n_patches, mask_ratio);
  std::vector<std::vector<int>> out(static_cast<std::size_t>(images));
  std::vector<int> perm(static_cast<std::size_t>(n_patches));
  for (int b = 0; b < images; ++b) {
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(b) + 1);
    // Fisher-Yates with our own draws: the same permutation on every standard library.
    for (int i = n_patches - 1; i > 0; --i) {
      const auto j = static_cast<int>(rng() % static_cast<std::uint64_t>(i + 1));
      std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
    }
    out[static_cast<std::size_t>(b)].assign(perm.begin(), perm.begin() + k);
  }
  return out;
}

// ---- Names and files ---------------------------------------------------------------------------------

namespace {

// The ViTMAE name of a decoder tensor from its ViTWeights (ViT) name.
std::string mae_name(const std::string& vit) {
  static const std::map<std::string, std::string> fixed = {
      {"vit.embeddings.patch_embeddings.projection.weight", "decoder.decoder_embed.weight"},
      {"vit.embeddings.patch_embeddings.projection.bias", "decoder.decoder_embed.bias"},
      {"vit.embeddings.cls_token", "decoder.mask_token"},
      {"vit.layernorm.weight", "decoder.decoder_norm.weight"},
      {"vit.layernorm.bias", "decoder.decoder_norm.bias"},
      {"classifier.weight", "decoder.decoder_pred.weight"},
      {"classifier.bias", "decoder.decoder_pred.bias"}};
  if (auto f = fixed.find(vit); f != fixed.end()) return f->second;
  const std::string prefix = "vit.encoder.layer.";
  if (vit.rfind(prefix, 0) == 0) return "decoder.decoder_layers." + vit.substr(prefix.size());
  return vit;
}

}  // namespace

std::vector<ParamRef> decoder_parameters(ViTWeights& decoder) {
  std::vector<ParamRef> out = parameters(decoder);
  for (ParamRef& p : out) p.name = mae_name(p.name);
  return out;
}

inference::Status save_decoder(const std::filesystem::path& file, const ViTConfig& encoder, const MaeConfig& mae, const ViTWeights& decoder) {
  auto& d = const_cast<ViTWeights&>(decoder);  // parameters() needs mutable access; nothing is written
  std::vector<inference::TensorToWrite> tensors;
  std::vector<std::vector<std::int64_t>> shapes;
  for (const ParamRef& p : decoder_parameters(d)) {
    std::vector<std::int64_t> shape;
    const Index Dd = decoder.patch_w.rows();
    if (p.name == "decoder.mask_token") shape = {1, 1, static_cast<std::int64_t>(Dd)};
    else shape = {static_cast<std::int64_t>(p.size)};
    tensors.push_back({p.name, shape, p.data, inference::DType::F32});
  }
  // Matrices keep their two dimensions.
  const auto set_matrix = [&](const std::string& name, const Matrix& m) {
    for (auto& t : tensors)
      if (t.name == name) t.shape = {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
  };
  set_matrix("decoder.decoder_embed.weight", decoder.patch_w);
  set_matrix("decoder.decoder_pred.weight", decoder.classifier.w);
  for (std::size_t i = 0; i < decoder.blocks.size(); ++i) {
    const auto& b = decoder.blocks[i];
    const std::string p = "decoder.decoder_layers." + std::to_string(i) + ".";
    set_matrix(p + "attention.attention.query.weight", b.query.w);
    set_matrix(p + "attention.attention.key.weight", b.key.w);
    set_matrix(p + "attention.attention.value.weight", b.value.w);
    set_matrix(p + "attention.output.dense.weight", b.attn_out.w);
    set_matrix(p + "intermediate.dense.weight", b.fc1.w);
    set_matrix(p + "output.dense.weight", b.fc2.w);
  }
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"mask_ratio", std::to_string(mae.mask_ratio)},
                                             {"decoder_hidden_size", std::to_string(mae.decoder_hidden)},
                                             {"decoder_num_hidden_layers", std::to_string(mae.decoder_layers)},
                                             {"decoder_num_attention_heads", std::to_string(mae.decoder_heads)},
                                             {"decoder_intermediate_size", std::to_string(mae.decoder_intermediate)},
                                             {"norm_pix_loss", mae.norm_pix_loss ? "true" : "false"},
                                             {"encoder_hidden_size", std::to_string(encoder.hidden_size)},
                                             {"decoder_position_embeddings", "fixed 2-D sin-cos"}};
  return inference::write_safetensors(file, tensors, meta);
}

inference::Result<LoadedDecoder> load_decoder(const std::filesystem::path& file, const ViTConfig& encoder) {
  using inference::Error;
  using inference::ErrorKind;
  auto f = inference::SafetensorsFile::open(file);
  if (!f) return f.error();
  const auto& meta = f->metadata();
  LoadedDecoder out;
  const auto integer = [&](const char* key, int& value) -> bool {
    auto it = meta.find(key);
    if (it == meta.end()) return false;
    try {
      value = std::stoi(it->second);
    } catch (...) {
      return false;
    }
    return true;
  };
  if (!integer("decoder_hidden_size", out.mae.decoder_hidden) || !integer("decoder_num_hidden_layers", out.mae.decoder_layers) ||
      !integer("decoder_num_attention_heads", out.mae.decoder_heads) || !integer("decoder_intermediate_size", out.mae.decoder_intermediate)) {
    return Error{ErrorKind::Invalid, file.string() + ": not a Hilum MAE decoder (its metadata lacks the decoder's shape)"};
  }
  if (auto it = meta.find("norm_pix_loss"); it != meta.end()) out.mae.norm_pix_loss = it->second == "true";
  if (auto it = meta.find("mask_ratio"); it != meta.end()) {
    try {
      out.mae.mask_ratio = std::stof(it->second);
    } catch (...) {
    }
  }
  try {
    out.weights = initial_decoder(encoder, out.mae, 0);
  } catch (const std::invalid_argument& e) {
    return Error{ErrorKind::Invalid, file.string() + ": " + e.what()};
  }
  for (const ParamRef& p : decoder_parameters(out.weights)) {
    const inference::TensorInfo* info = f->find(p.name);
    if (info == nullptr) return Error{ErrorKind::Invalid, file.string() + ": missing " + p.name};
    std::int64_t n = 1;
    for (auto s : info->shape) n *= s;
    if (n != static_cast<std::int64_t>(p.size)) return Error{ErrorKind::Invalid, file.string() + ": " + p.name + " has the wrong shape"};
    auto data = f->read_f32(p.name);
    if (!data) return data.error();
    std::copy(data->begin(), data->end(), p.data);
  }
  return out;
}

// ---- Tape and entry points ---------------------------------------------------------------------------

struct MaeTape::State {
  mae_engine::State<float> f;
  std::unique_ptr<mae_engine::State<double>> d;
};

MaeTape::MaeTape() : state(std::make_unique<State>()) {}
MaeTape::~MaeTape() = default;
MaeTape::MaeTape(MaeTape&&) noexcept = default;
MaeTape& MaeTape::operator=(MaeTape&&) noexcept = default;
std::size_t MaeTape::bytes() const { return state ? state->f.bytes() : 0; }

MaeOutput mae_forward(const ViTConfig& config, const ViTWeights& encoder, const MaeConfig& mae, const ViTWeights& decoder,
                      const std::vector<Image>& batch, const std::vector<std::vector<int>>& keep, const TrainOptions& options,
                      MaeTape& tape) {
  if (!tape.state) tape.state = std::make_unique<MaeTape::State>();
  MaeOutput out;
  out.loss = mae_engine::forward<float>(config, encoder, mae, decoder, batch, keep, options, tape.state->f);
  out.masked = static_cast<int>(tape.state->f.B * (tape.state->f.N - tape.state->f.K));
  return out;
}

const Matrix& mae_prediction(const MaeTape& tape) {
  if (!tape.state || !tape.state->f.valid) throw std::logic_error("mae_prediction: no forward on this tape");
  return tape.state->f.pred;
}

void mae_backward(const ViTConfig& config, const ViTWeights& encoder, const ViTWeights& decoder, MaeTape& tape, ViTWeights& encoder_grads,
                  ViTWeights& decoder_grads) {
  if (!tape.state) throw std::logic_error("mae_backward: no forward on this tape");
  mae_engine::backward<float>(config, encoder, decoder, tape.state->f, encoder_grads, decoder_grads);
}

namespace ops {

double mae_forward_double(const ViTConfig& config, const WeightsT<double>& encoder, const MaeConfig& mae, const WeightsT<double>& decoder,
                          const std::vector<Image>& batch, const std::vector<std::vector<int>>& keep, const TrainOptions& options,
                          MaeTape& tape) {
  if (!tape.state) tape.state = std::make_unique<MaeTape::State>();
  if (!tape.state->d) tape.state->d = std::make_unique<mae_engine::State<double>>();
  return mae_engine::forward<double>(config, encoder, mae, decoder, batch, keep, options, *tape.state->d);
}

void mae_backward_double(const ViTConfig& config, const WeightsT<double>& encoder, const WeightsT<double>& decoder, MaeTape& tape,
                         WeightsT<double>& encoder_grads, WeightsT<double>& decoder_grads) {
  if (!tape.state || !tape.state->d) throw std::logic_error("mae_backward_double: no forward on this tape");
  mae_engine::backward<double>(config, encoder, decoder, *tape.state->d, encoder_grads, decoder_grads);
}

}  // namespace ops

}  // namespace hilum::training
