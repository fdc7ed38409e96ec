// The ViT's backward pass: a forward that saves what backward needs (the Tape), and a backward that
// adds d(loss)/d(weights) into a ViTWeights-shaped gradient. One engine, templated on the scalar
// type: float for training, double for the finite-difference tests (ops::forward_double).
#include "hilum/training/backprop.hpp"

#include <stdexcept>

#include "hilum/training/explain.hpp"
#include "engine.hpp"
#include "hilum/training/ops.hpp"

namespace hilum::training {

namespace engine {

using namespace ops;

template <typename T>
struct State {
  bool valid = false;
  bool from_images = false;  // patches saved: the embeddings can get gradients
  bool used = false;         // backward already ran on this forward
  TrainOptions options;
  Index B = 0, Tn = 0;
  int gh = 0, gw = 0;
  Mat<T> patches;
  std::vector<BlockSave<T>> blocks;  // blocks [first, L)
  BlockSave<T> scratch;              // checkpoint recomputation
  Mat<T> xcls;                       // CLS rows entering the final LayerNorm (B x D)
  Vec<T> meanF, rstdF;
  Mat<T> cls_ln;                     // classifier input (B x D)
  Work<T> work;
  // When set, backward also stores d(loss)/d(attention probabilities) of every trainable block
  // (index i - first), shaped as BlockSave::probs (training::attention_gradients).
  std::vector<Mat<T>>* probability_gradients = nullptr;

  [[nodiscard]] std::size_t bytes() const {
    if (!valid) return 0;
    std::size_t n = static_cast<std::size_t>(xcls.size() + meanF.size() + rstdF.size() + cls_ln.size()) * sizeof(T);
    if (from_images && options.first_trainable_block == 0) n += static_cast<std::size_t>(patches.size()) * sizeof(T);
    for (const auto& b : blocks) n += b.bytes(true);
    n += scratch.bytes(false);  // checkpoint recomputation (and the frozen prefix's last block)
    return n;
  }
};


// The last block, whose output is only read at the CLS tokens: LayerNorm, keys and values on every
// token; the query, attention output, residual, MLP on the B CLS rows. `out` is B x D.
template <typename T, typename BW>
void last_block_forward(const Dims& d, const BW& w, int index, const TrainOptions& o, const Mat<T>& x, BlockSave<T>& s, Work<T>& wk,
                        Mat<T>& out) {
  drop_path_scales(o, d.L, index, 0, d.B, s.scale_attn);
  drop_path_scales(o, d.L, index, 1, d.B, s.scale_mlp);
  layernorm_forward<T>(x, w.ln_before.gamma, w.ln_before.beta, d.eps, wk.ln, s.mean1, s.rstd1);
  linear_forward<T>(wk.ln, w.key.w, w.key.b, s.k, d.precision);
  linear_forward<T>(wk.ln, w.value.w, w.value.b, s.v, d.precision);
  gather_rows<T>(wk.ln, d.B, d.Tn, wk.ln_cls);
  linear_forward<T>(wk.ln_cls, w.query.w, w.query.b, s.q, d.precision);
  attention_forward<T>(s.q, s.k, s.v, d.B, 1, d.Tn, d.H, s.probs, s.ctx, d.precision);
  linear_forward<T>(s.ctx, w.attn_out.w, w.attn_out.b, wk.tmp_small, d.precision);
  gather_rows<T>(x, d.B, d.Tn, wk.xq);
  residual_forward<T>(wk.xq, wk.tmp_small, s.scale_attn, 1, s.x1);
  layernorm_forward<T>(s.x1, w.ln_after.gamma, w.ln_after.beta, d.eps, wk.ln_small, s.mean2, s.rstd2);
  linear_forward<T>(wk.ln_small, w.fc1.w, w.fc1.b, s.h, d.precision);
  gelu_forward<T>(s.h, wk.g_small, d.tanh);
  linear_forward<T>(wk.g_small, w.fc2.w, w.fc2.b, wk.tmp_small, d.precision);
  residual_forward<T>(s.x1, wk.tmp_small, s.scale_mlp, 1, out);
}

// dxo: on entry d(loss)/d(output) (B x D; it is overwritten). dx: d(loss)/d(block input), (B*T) x D.
template <typename T, typename BW, typename BG>
void last_block_backward(const Dims& d, const BW& w, const BlockSave<T>& s, const Mat<T>& x, Work<T>& wk, BG& g, Mat<T>& dxo, Mat<T>& dx) {
  const Mat<T>* df = &dxo;
  if (!s.scale_mlp.empty()) {
    residual_backward_branch<T>(dxo, s.scale_mlp, 1, wk.dbr_small);
    df = &wk.dbr_small;
  }
  gelu_forward<T>(s.h, wk.g_small, d.tanh);
  linear_backward<T>(wk.g_small, w.fc2.w, *df, &wk.dg_small, false, &g.fc2.w, &g.fc2.b, d.precision);
  gelu_backward_inplace<T>(s.h, wk.dg_small, d.tanh);
  layernorm_apply<T>(s.x1, w.ln_after.gamma, w.ln_after.beta, s.mean2, s.rstd2, wk.ln_small);
  linear_backward<T>(wk.ln_small, w.fc1.w, wk.dg_small, &wk.dln_cls, false, &g.fc1.w, &g.fc1.b, d.precision);
  layernorm_backward<T>(s.x1, s.mean2, s.rstd2, w.ln_after.gamma, wk.dln_cls, dxo, &g.ln_after.gamma, &g.ln_after.beta);
  const Mat<T>* da = &dxo;
  if (!s.scale_attn.empty()) {
    residual_backward_branch<T>(dxo, s.scale_attn, 1, wk.dbr_small);
    da = &wk.dbr_small;
  }
  linear_backward<T>(s.ctx, w.attn_out.w, *da, &wk.dctx_small, false, &g.attn_out.w, &g.attn_out.b, d.precision);
  attention_backward<T>(s.q, s.k, s.v, s.probs, wk.dctx_small, d.B, 1, d.Tn, d.H, wk.dq_small, wk.dk, wk.dv, false, d.precision);
  layernorm_apply<T>(x, w.ln_before.gamma, w.ln_before.beta, s.mean1, s.rstd1, wk.ln);
  gather_rows<T>(wk.ln, d.B, d.Tn, wk.ln_cls);
  linear_backward<T>(wk.ln_cls, w.query.w, wk.dq_small, &wk.dln_cls, false, &g.query.w, &g.query.b, d.precision);
  linear_backward<T>(wk.ln, w.key.w, wk.dk, &wk.dln, false, &g.key.w, &g.key.b, d.precision);
  linear_backward<T>(wk.ln, w.value.w, wk.dv, &wk.dln, true, &g.value.w, &g.value.b, d.precision);
  dx.setZero(d.B * d.Tn, x.cols());
  for (Index b = 0; b < d.B; ++b) {
    wk.dln.row(b * d.Tn) += wk.dln_cls.row(b);
    dx.row(b * d.Tn) = dxo.row(b);  // the residual path
  }
  layernorm_backward<T>(x, s.mean1, s.rstd1, w.ln_before.gamma, wk.dln, dx, &g.ln_before.gamma, &g.ln_before.beta);
}

void check_images(const ViTConfig& c, const std::vector<Image>& batch) {
  if (batch.empty()) throw std::invalid_argument("training forward: an empty batch");
  const int P = c.patch_size;
  for (const Image& im : batch) {
    if (im.channels != c.num_channels || im.height <= 0 || im.width <= 0 || im.height % P != 0 || im.width % P != 0 ||
        im.data.size() != static_cast<std::size_t>(im.channels) * im.height * im.width || im.height != batch[0].height ||
        im.width != batch[0].width) {
      throw std::invalid_argument("training forward: images must be " + std::to_string(c.num_channels) +
                                  " x H x W with H and W multiples of " + std::to_string(P) + ", all of the same size");
    }
  }
}

template <typename W>
void check_model(const ViTConfig& c, const W& w, const TrainOptions& o) {
  if (static_cast<int>(w.blocks.size()) != c.num_layers) throw std::invalid_argument("training: the weights do not have config.num_layers blocks");
  if (o.first_trainable_block < 0 || o.first_trainable_block > c.num_layers) {
    throw std::invalid_argument("training: first_trainable_block must be in [0, num_layers]");
  }
}

// Embeddings and blocks [0, n_blocks) without saving anything, into `x` ((B*T) x D).
template <typename T, typename W>
void prefix(const ViTConfig& c, const W& w, const std::vector<Image>& batch, int n_blocks, State<T>& st, bool keep_patches, Mat<T>& x) {
  check_images(c, batch);
  const int P = c.patch_size;
  st.gh = batch[0].height / P;
  st.gw = batch[0].width / P;
  st.B = static_cast<Index>(batch.size());
  st.Tn = static_cast<Index>(st.gh) * st.gw + 1;
  Work<T>& wk = st.work;
  Mat<T>& patches = keep_patches ? st.patches : wk.patches;
  unfold_patches<T>(batch, P, patches);
  linear_forward<T>(patches, w.patch_w, w.patch_b, wk.embedded);
  positions_forward<T>(w.position, st.gh, st.gw, wk.positions);
  tokens_forward<T>(wk.embedded, w.cls_token, wk.positions, st.B, x);
  if (!keep_patches) wk.patches.resize(0, 0);
  const Dims d = dims(c, st.B, st.Tn, st.options.precision);
  TrainOptions none;  // no drop-path in frozen blocks
  for (int i = 0; i < n_blocks; ++i) block_forward<T>(d, w.blocks[static_cast<std::size_t>(i)], i, none, x, st.scratch, wk, x);
}

// Blocks [first, L) with a tape from the tokens in st.blocks[0].x (or st.work.stream when first == L),
// then the final LayerNorm on the CLS rows and the classifier.
template <typename T, typename W>
void trainable_forward(const ViTConfig& c, const W& w, State<T>& st, Mat<T>& logits) {
  const TrainOptions& o = st.options;
  const int first = o.first_trainable_block, L = c.num_layers;
  const Dims d = dims(c, st.B, st.Tn, st.options.precision);
  Work<T>& wk = st.work;
  for (int i = first; i < L; ++i) {
    BlockSave<T>& own = st.blocks[static_cast<std::size_t>(i - first)];
    if (i == L - 1) {  // never checkpointed: backward starts with it
      last_block_forward<T>(d, w.blocks[static_cast<std::size_t>(i)], i, o, own.x, own, wk, st.xcls);
      break;
    }
    BlockSave<T>& s = o.checkpoint_activations ? st.scratch : own;
    if (o.checkpoint_activations) own.clear_saved();
    block_forward<T>(d, w.blocks[static_cast<std::size_t>(i)], i, o, own.x, s, wk, st.blocks[static_cast<std::size_t>(i + 1 - first)].x);
  }
  if (first == L) gather_rows<T>(wk.stream, st.B, st.Tn, st.xcls);
  layernorm_forward<T>(st.xcls, w.final_ln.gamma, w.final_ln.beta, c.layer_norm_eps, st.cls_ln, st.meanF, st.rstdF);
  if (w.has_classifier) linear_forward<T>(st.cls_ln, w.classifier.w, w.classifier.b, logits);
  else logits.resize(st.B, 0);
  st.valid = true;
  st.used = false;
}

template <typename T, typename W>
void start(const ViTConfig& c, const W& w, const TrainOptions& o, State<T>& st) {
  check_model(c, w, o);
  st.options = o;
  st.valid = false;
  st.blocks.resize(static_cast<std::size_t>(c.num_layers - o.first_trainable_block));
}

template <typename T, typename W>
void forward_images(const ViTConfig& c, const W& w, const std::vector<Image>& batch, const TrainOptions& o, State<T>& st, Mat<T>& logits) {
  start(c, w, o, st);
  const int first = o.first_trainable_block;
  const bool to_blocks = first < c.num_layers;
  Mat<T>& x = to_blocks && first == 0 ? st.blocks[0].x : st.work.stream;
  prefix<T>(c, w, batch, first, st, first == 0, x);
  if (to_blocks && first > 0) st.blocks[0].x = st.work.stream;
  st.from_images = true;
  if (first > 0) st.patches.resize(0, 0);
  trainable_forward<T>(c, w, st, logits);
}

template <typename T, typename W>
void forward_tokens(const ViTConfig& c, const W& w, const std::vector<Matrix>& tokens, const TrainOptions& o, State<T>& st, Mat<T>& logits) {
  start(c, w, o, st);
  if (tokens.empty()) throw std::invalid_argument("forward_from: an empty batch");
  const Index Tn = tokens[0].rows(), D = c.hidden_size;
  for (const Matrix& t : tokens) {
    if (t.rows() != Tn || t.cols() != D || Tn < 1) throw std::invalid_argument("forward_from: tokens must all be (1 + grid) x hidden");
  }
  st.B = static_cast<Index>(tokens.size());
  st.Tn = Tn;
  st.gh = st.gw = 0;
  st.from_images = false;
  st.patches.resize(0, 0);
  Mat<T>& x = o.first_trainable_block < c.num_layers ? st.blocks[0].x : st.work.stream;
  x.resize(st.B * Tn, D);
  for (Index b = 0; b < st.B; ++b) x.middleRows(b * Tn, Tn) = tokens[static_cast<std::size_t>(b)].template cast<T>();
  trainable_forward<T>(c, w, st, logits);
}

// d(loss)/d(probabilities) of one block from d(loss)/d(context) (B*Tq x D) and its values
// (B*Tk x D): per image and head, dP = dC V^T, in BlockSave::probs' layout ((B*H*Tq) x Tk).
template <typename T>
void probability_gradient(const Mat<T>& dctx, const Mat<T>& v, Index B, Index Tq, Index Tk, int H, Mat<T>& out) {
  const Index dh = v.cols() / H;
  out.resize(B * H * Tq, Tk);
  for (Index b = 0; b < B; ++b)
    for (int hd = 0; hd < H; ++hd) {
      out.middleRows((b * H + hd) * Tq, Tq).noalias() =
          dctx.block(b * Tq, hd * dh, Tq, dh) * v.block(b * Tk, hd * dh, Tk, dh).transpose();
    }
}

template <typename T, typename W>
void backward_impl(const ViTConfig& c, const W& w, State<T>& st, const Mat<T>& dlogits, W& g) {
  if (!st.valid) throw std::logic_error("backward: no forward on this tape");
  if (st.used) throw std::logic_error("backward: already ran on this forward (run forward again)");
  const TrainOptions& o = st.options;
  const int first = o.first_trainable_block, L = c.num_layers;
  if (static_cast<int>(g.blocks.size()) != L) throw std::invalid_argument("backward: grads must have the weights' shapes (zeros_like)");
  Work<T>& wk = st.work;
  const Index D = c.hidden_size;
  // Classifier on the CLS rows, then the final LayerNorm.
  wk.dcls.setZero(st.B, D);
  if (w.has_classifier) {
    if (dlogits.rows() != st.B || dlogits.cols() != w.classifier.w.rows()) throw std::invalid_argument("backward: dlogits must be batch x labels");
    const bool tc = o.train_classifier;
    linear_backward<T>(st.cls_ln, w.classifier.w, dlogits, &wk.dcls, true, tc ? &g.classifier.w : nullptr, tc ? &g.classifier.b : nullptr);
  }
  wk.dxcls.setZero(st.B, D);
  layernorm_backward<T>(st.xcls, st.meanF, st.rstdF, w.final_ln.gamma, wk.dcls, wk.dxcls, &g.final_ln.gamma, &g.final_ln.beta);
  st.used = true;
  if (first == L) return;
  const Dims d = dims(c, st.B, st.Tn, st.options.precision);
  {
    const BlockSave<T>& last = st.blocks[static_cast<std::size_t>(L - 1 - first)];
    last_block_backward<T>(d, w.blocks[static_cast<std::size_t>(L - 1)], last, last.x, wk, g.blocks[static_cast<std::size_t>(L - 1)],
                           wk.dxcls, wk.dx);
    if (st.probability_gradients != nullptr) {
      st.probability_gradients->resize(static_cast<std::size_t>(L - first));
      probability_gradient<T>(wk.dctx_small, last.v, d.B, 1, d.Tn, d.H, st.probability_gradients->back());
    }
  }
  for (int i = L - 2; i >= first; --i) {
    const BlockSave<T>& own = st.blocks[static_cast<std::size_t>(i - first)];
    const auto& bw = w.blocks[static_cast<std::size_t>(i)];
    const BlockSave<T>& saved = o.checkpoint_activations ? st.scratch : own;
    if (o.checkpoint_activations) block_forward<T>(d, bw, i, o, own.x, st.scratch, wk, wk.out);
    block_backward<T>(d, bw, saved, own.x, wk, g.blocks[static_cast<std::size_t>(i)], wk.dx);
    if (st.probability_gradients != nullptr) {
      probability_gradient<T>(wk.dctx, saved.v, d.B, d.Tn, d.Tn, d.H, (*st.probability_gradients)[static_cast<std::size_t>(i - first)]);
    }
  }
  if (first == 0 && st.from_images) {
    wk.dpos.setZero(st.Tn, D);
    tokens_backward<T>(wk.dx, st.B, st.Tn, &g.cls_token, &wk.dpos, wk.demb);
    positions_backward<T>(wk.dpos, position_grid(w.position.rows()), st.gh, st.gw, g.position);
    linear_backward<T>(st.patches, w.patch_w, wk.demb, nullptr, false, &g.patch_w, &g.patch_b);
  }
}

}  // namespace engine

// ---- Tape -----------------------------------------------------------------------------------------

struct Tape::State {
  engine::State<float> f;
  std::unique_ptr<engine::State<double>> d;
};

Tape::Tape() : state(std::make_unique<State>()) {}
Tape::~Tape() = default;
Tape::Tape(Tape&&) noexcept = default;
Tape& Tape::operator=(Tape&&) noexcept = default;
std::size_t Tape::bytes() const { return state ? state->f.bytes() : 0; }

// ---- Gradients ------------------------------------------------------------------------------------

ViTWeights zeros_like(const ViTWeights& w) {
  ViTWeights g = w;
  set_zero(g);
  return g;
}

void set_zero(ViTWeights& g) {
  ops::for_each_tensor(g, [](const std::string&, float* p, std::size_t n, int, bool) { std::fill(p, p + n, 0.0f); });
}

double squared_norm(const ViTWeights& g) {
  double s = 0.0;
  ops::for_each_tensor(const_cast<ViTWeights&>(g), [&](const std::string&, float* p, std::size_t n, int, bool) {
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
  });
  return s;
}

void scale(ViTWeights& g, float factor) {
  ops::for_each_tensor(g, [&](const std::string&, float* p, std::size_t n, int, bool) {
    for (std::size_t i = 0; i < n; ++i) p[i] *= factor;
  });
}

std::vector<ParamRef> parameters(ViTWeights& w) {
  std::vector<ParamRef> out;
  ops::for_each_tensor(w, [&](const std::string& name, float* p, std::size_t n, int depth, bool decay) {
    out.push_back({name, p, n, depth, decay});
  });
  return out;
}

// ---- Forward / backward -------------------------------------------------------------------------------

namespace {
TrainOutput output(const engine::State<float>& st, Matrix logits) {
  TrainOutput out;
  out.logits = std::move(logits);
  out.embeddings = st.cls_ln;
  return out;
}
}  // namespace

TrainOutput forward(const ViTConfig& config, const ViTWeights& weights, const std::vector<Image>& batch, const TrainOptions& options,
                    Tape& tape) {
  if (!tape.state) tape.state = std::make_unique<Tape::State>();
  Matrix logits;
  engine::forward_images<float>(config, weights, batch, options, tape.state->f, logits);
  return output(tape.state->f, std::move(logits));
}

std::vector<Matrix> frozen_prefix(const ViTConfig& config, const ViTWeights& weights, const std::vector<Image>& batch, int n_blocks,
                                  inference::Precision precision) {
  TrainOptions o;
  o.first_trainable_block = n_blocks;
  o.precision = precision;
  engine::check_model(config, weights, o);
  engine::State<float> st;
  st.options = o;
  Matrix x;
  engine::prefix<float>(config, weights, batch, n_blocks, st, false, x);
  std::vector<Matrix> out;
  out.reserve(batch.size());
  for (Eigen::Index b = 0; b < st.B; ++b) out.emplace_back(x.middleRows(b * st.Tn, st.Tn));
  return out;
}

TrainOutput forward_from(const ViTConfig& config, const ViTWeights& weights, const std::vector<Matrix>& tokens, const TrainOptions& options,
                         Tape& tape) {
  if (!tape.state) tape.state = std::make_unique<Tape::State>();
  Matrix logits;
  engine::forward_tokens<float>(config, weights, tokens, options, tape.state->f, logits);
  return output(tape.state->f, std::move(logits));
}

void backward(const ViTConfig& config, const ViTWeights& weights, Tape& tape, const Matrix& dlogits, ViTWeights& grads) {
  if (!tape.state) throw std::logic_error("backward: no forward on this tape");
  engine::backward_impl<float>(config, weights, tape.state->f, dlogits, grads);
}

AttentionGradients attention_gradients(const ViTConfig& config, const ViTWeights& weights, const Image& image, int label) {
  if (!weights.has_classifier || weights.classifier.w.rows() == 0) throw std::invalid_argument("attention_gradients: the model has no classifier");
  if (label < 0 || label >= weights.classifier.w.rows()) throw std::invalid_argument("attention_gradients: no output " + std::to_string(label));
  engine::State<float> st;
  Matrix logits;
  engine::forward_images<float>(config, weights, {image}, TrainOptions{}, st, logits);
  Matrix dlogits = Matrix::Zero(1, logits.cols());
  dlogits(0, label) = 1.0f;
  std::vector<Matrix> grads;
  st.probability_gradients = &grads;
  ViTWeights g = zeros_like(weights);
  engine::backward_impl<float>(config, weights, st, dlogits, g);
  AttentionGradients out;
  out.label = label;
  out.grid_h = st.gh;
  out.grid_w = st.gw;
  out.heads = config.num_heads;
  out.logits = logits.row(0).transpose();
  out.gradients = std::move(grads);
  out.probabilities.reserve(st.blocks.size());
  for (const auto& b : st.blocks) out.probabilities.push_back(b.probs);
  return out;
}

namespace ops {

Mat<double> forward_double(const ViTConfig& config, const WeightsT<double>& weights, const std::vector<Image>& batch,
                           const TrainOptions& options, Tape& tape) {
  if (!tape.state) tape.state = std::make_unique<Tape::State>();
  if (!tape.state->d) tape.state->d = std::make_unique<engine::State<double>>();
  Mat<double> logits;
  engine::forward_images<double>(config, weights, batch, options, *tape.state->d, logits);
  return logits;
}

void backward_double(const ViTConfig& config, const WeightsT<double>& weights, Tape& tape, const Mat<double>& dlogits,
                     WeightsT<double>& grads) {
  if (!tape.state || !tape.state->d) throw std::logic_error("backward_double: no forward on this tape");
  engine::backward_impl<double>(config, weights, *tape.state->d, dlogits, grads);
}

namespace {
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

double drop_path_scale(const TrainOptions& options, int num_layers, int block, int branch, int image) {
  if (!(options.drop_path > 0.0f) || num_layers < 2) return 1.0;
  const double p = static_cast<double>(options.drop_path) * block / (num_layers - 1);
  if (p <= 0.0) return 1.0;
  if (p >= 1.0) return 0.0;
  std::uint64_t h = splitmix64(options.seed);
  h = splitmix64(h ^ static_cast<std::uint64_t>(block));
  h = splitmix64(h ^ static_cast<std::uint64_t>(branch));
  h = splitmix64(h ^ static_cast<std::uint64_t>(image));
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return u < p ? 0.0 : 1.0 / (1.0 - p);
}

}  // namespace ops

}  // namespace hilum::training
