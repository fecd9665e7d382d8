// 2-D convolutions (forward, input gradient, weight gradient) by oneDNN, as XLA typed-FFI
// handlers for jitted JAX on CPU (research/onednn/__init__.py registers and wraps them).
//
// Layouts are JAX's: images NHWC, kernels HWIO ([KH, KW, C / groups, O]), so no transposes
// are needed around the call. Images go to oneDNN as `nhwc` directly; the kernel layout is
// left to oneDNN (`any`) and the small kernel is reordered to or from HWIO on each call,
// because its blocked kernels are much faster than a strided-HWIO one. Primitives are built
// once per shape and attributes and cached: building one costs far more than running it.
//
// Threads: oneDNN runs on GNU OpenMP, XLA on its own pool. Each call sets the calling thread's
// OpenMP team size: OpenMP's default (OMP_NUM_THREADS, else all cores) unless
// OnednnConvSetThreads chose another. On 2 cores shared with other jobs neither won
// consistently: per train step, 1 thread was 5-7% faster than 2 at load 7-9, and at load 4
// once 24% slower, once 6% faster (python -m research.onednn.measure --steps).
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

enum class Kind { kForward, kBackwardData, kBackwardWeights };

std::atomic<int> threads{0};  // 0: OpenMP's default

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// The attributes JAX's conv_general_dilated passes (lhs dilation excluded: the Python
// side routes those convolutions to XLA).
struct Attrs {
  dims strides, pad_lo, pad_hi, dilation;  // dilation as JAX's rhs_dilation (1: none)
  int64_t groups;
};

// One cached convolution: the primitive and the reorder between the user's HWIO kernel and
// the primitive's chosen kernel layout (absent when they coincide).
struct Entry {
  dnnl::primitive conv;
  dnnl::memory::desc user_weights, conv_weights;
  dnnl::reorder weights_reorder;  // empty when user_weights == conv_weights
  dnnl::memory::desc scratch;       // oneDNN's scratchpad, provided by the caller
  dnnl::memory::desc a, b, out;     // the image operands' descriptors (b, out: if images)
  int a_arg, out_arg;               // oneDNN's argument ids for a and (unless a kernel) out
};

// HWIO kernel [KH, KW, I, G * Og] described as oneDNN's grouped goihw dims with strides.
dnnl::memory::desc HwioDesc(dt type, int64_t kh, int64_t kw, int64_t i, int64_t o,
                            int64_t groups) {
  if (groups == 1) {
    return dnnl::memory::desc({o, i, kh, kw}, type, dims{1, o, kw * i * o, i * o});
  }
  const int64_t og = o / groups;
  return dnnl::memory::desc({groups, og, i, kh, kw}, type,
                            dims{og, 1, o, kw * i * o, i * o});
}

dnnl::memory::desc AnyWeights(dt type, const dnnl::memory::desc& user) {
  return dnnl::memory::desc(user.get_dims(), type, tag::any);
}

// Builds the primitive for `kind`. x: NHWC input image dims, y: NHWC output image dims,
// k: HWIO kernel dims; `type` is the images' element type (f32 or bf16).
std::shared_ptr<Entry> Build(Kind kind, dt type, const dims& x, const dims& y, const dims& k,
                             const Attrs& a) {
  dnnl::memory::desc src({x[0], x[3], x[1], x[2]}, type, tag::nhwc);
  dnnl::memory::desc dst({y[0], y[3], y[1], y[2]}, type, tag::nhwc);
  // The weight gradient accumulates over the whole batch: keep it in f32 for bf16 images and
  // round once, in the reorder to the caller's kernel type.
  dt weights_type = kind == Kind::kBackwardWeights ? dt::f32 : type;
  dnnl::memory::desc user = HwioDesc(type, k[0], k[1], k[2], k[3], a.groups);
  dnnl::memory::desc any = AnyWeights(weights_type, user);
  // The forward descriptor, also the backward ones' hint, keeps the images' type for its
  // weights: oneDNN has no bf16 forward convolution with f32 weights.
  dnnl::memory::desc fwd_any = AnyWeights(type, user);
  dims dilation = {a.dilation[0] - 1, a.dilation[1] - 1};  // oneDNN counts the gaps
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto e = std::make_shared<Entry>();
  e->user_weights = user;
  auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(
      Engine(), dnnl::prop_kind::forward_training, alg, src, fwd_any, dst, a.strides, dilation,
      a.pad_lo, a.pad_hi, attr);
  if (kind == Kind::kForward) {
    e->a = src, e->out = dst, e->a_arg = DNNL_ARG_SRC, e->out_arg = DNNL_ARG_DST;
    e->conv = dnnl::convolution_forward(fwd);
    e->conv_weights = fwd.weights_desc();
    e->scratch = fwd.scratchpad_desc();
  } else if (kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), alg, src, any, dst, a.strides, dilation, a.pad_lo, a.pad_hi, fwd, attr);
    e->a = dst, e->out = src, e->a_arg = DNNL_ARG_DIFF_DST, e->out_arg = DNNL_ARG_DIFF_SRC;
    e->conv = dnnl::convolution_backward_data(pd);
    e->conv_weights = pd.weights_desc();
    e->scratch = pd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), alg, src, any, dst, a.strides, dilation, a.pad_lo, a.pad_hi, fwd, attr);
    e->a = src, e->b = dst, e->a_arg = DNNL_ARG_SRC, e->out_arg = DNNL_ARG_DIFF_WEIGHTS;
    e->conv = dnnl::convolution_backward_weights(pd);
    e->conv_weights = pd.diff_weights_desc();
    e->scratch = pd.scratchpad_desc();
  }
  if (e->conv_weights != user) {
    e->weights_reorder = kind == Kind::kBackwardWeights
                             ? dnnl::reorder(dnnl::reorder::primitive_desc(
                                   Engine(), e->conv_weights, Engine(), user))
                             : dnnl::reorder(dnnl::reorder::primitive_desc(
                                   Engine(), user, Engine(), e->conv_weights));
  }
  return e;
}

std::string Key(Kind kind, dt type, const dims& x, const dims& y, const dims& k,
                const Attrs& a) {
  std::string key = std::to_string(static_cast<int>(kind)) + ":" +
                    std::to_string(static_cast<int>(type));
  for (const dims* d : {&x, &y, &k, &a.strides, &a.pad_lo, &a.pad_hi, &a.dilation}) {
    key += "|";
    for (int64_t v : *d) key += std::to_string(v) + ",";
  }
  return key + "|" + std::to_string(a.groups);
}

// Thread-safe: XLA may run independent convolutions of one program on several threads.
std::shared_ptr<Entry> Lookup(Kind kind, dt type, const dims& x, const dims& y, const dims& k,
                              const Attrs& a) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<std::string, std::shared_ptr<Entry>>();
  std::string key = Key(kind, type, x, y, k, a);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  std::shared_ptr<Entry> e = Build(kind, type, x, y, k, a);  // outside the lock: slow
  std::lock_guard<std::mutex> lock(mu);
  return cache->emplace(key, e).first->second;
}

// Per-thread, grow-only, 64-byte aligned buffer (reordered kernels, oneDNN's scratchpad).
class Buffer {
 public:
  void* Get(size_t bytes) {
    if (bytes > size_) {
      data_.reset(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
      size_ = data_ ? bytes : 0;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  size_t size_ = 0;
};

dims Dims(ffi::AnyBuffer::Dimensions d) { return dims(d.begin(), d.end()); }

dims Vec(ffi::Span<const int64_t> s) { return dims(s.begin(), s.end()); }

// a, b -> out, with (a, b, out) = (x, kernel, y) forward, (dy, kernel, dx) for the input
// gradient, (x, dy, dkernel) for the kernel gradient.
ffi::Error Run(Kind kind, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
               ffi::Span<const int64_t> pad_hi, ffi::Span<const int64_t> dilation,
               int64_t groups) {
  const ffi::DataType t = a.element_type();
  if ((t != ffi::DataType::F32 && t != ffi::DataType::BF16) || b.element_type() != t ||
      out->element_type() != t) {
    return ffi::Error::InvalidArgument("onednn conv: operands must all be float32 or bfloat16");
  }
  if (a.dimensions().size() != 4 || b.dimensions().size() != 4 || strides.size() != 2 ||
      pad_lo.size() != 2 || pad_hi.size() != 2 || dilation.size() != 2) {
    return ffi::Error::InvalidArgument("onednn conv: only 2-D convolutions (rank-4 operands)");
  }
  const dt type = t == ffi::DataType::F32 ? dt::f32 : dt::bf16;
  Attrs attrs{Vec(strides), Vec(pad_lo), Vec(pad_hi), Vec(dilation), groups};
  const dims x = Dims(kind == Kind::kBackwardData ? out->dimensions() : a.dimensions());
  const dims y = Dims(kind == Kind::kForward        ? out->dimensions()
                      : kind == Kind::kBackwardData ? a.dimensions()
                                                    : b.dimensions());
  const dims k = Dims(kind == Kind::kBackwardWeights ? out->dimensions() : b.dimensions());
  static const int omp_default = omp_get_max_threads();  // before any call changes it
  const int team = threads > 0 ? threads.load() : omp_default;
  if (omp_get_max_threads() != team) omp_set_num_threads(team);
  try {
    std::shared_ptr<Entry> e = Lookup(kind, type, x, y, k, attrs);
    thread_local dnnl::stream stream(Engine());
    thread_local Buffer weights_buffer, scratch_buffer;
    dnnl::memory scratch(e->scratch, Engine(), scratch_buffer.Get(e->scratch.get_size()));
    void* kernel = kind == Kind::kBackwardWeights ? out->untyped_data() : b.untyped_data();
    dnnl::memory user(e->user_weights, Engine(), kernel);
    dnnl::memory weights = user;
    if (e->weights_reorder) {
      weights = dnnl::memory(e->conv_weights, Engine(),
                             weights_buffer.Get(e->conv_weights.get_size()));
      if (kind != Kind::kBackwardWeights) e->weights_reorder.execute(stream, user, weights);
    }
    // The image operands are a and out (forward, input gradient) or a and b (kernel
    // gradient); the kernel is b, out, or its reordered copy.
    dnnl::memory image_a(e->a, Engine(), a.untyped_data());
    std::unordered_map<int, dnnl::memory> args = {{e->a_arg, image_a},
                                                  {DNNL_ARG_SCRATCHPAD, scratch}};
    if (kind == Kind::kBackwardWeights) {
      args[DNNL_ARG_DIFF_DST] = dnnl::memory(e->b, Engine(), b.untyped_data());
      args[DNNL_ARG_DIFF_WEIGHTS] = weights;
    } else {
      args[DNNL_ARG_WEIGHTS] = weights;
      args[e->out_arg] = dnnl::memory(e->out, Engine(), out->untyped_data());
    }
    e->conv.execute(stream, args);
    if (kind == Kind::kBackwardWeights && e->weights_reorder) {
      e->weights_reorder.execute(stream, weights, user);
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  }
  return ffi::Error::Success();
}

template <Kind kind>
ffi::Error Handler(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                   ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
                   ffi::Span<const int64_t> pad_hi, ffi::Span<const int64_t> dilation,
                   int64_t groups) {
  return Run(kind, a, b, out, strides, pad_lo, pad_hi, dilation, groups);
}

}  // namespace

// The OpenMP team size of every later call, from any thread; 0: OpenMP's default.
extern "C" void OnednnConvSetThreads(int n) { threads = n > 0 ? n : 0; }

#define ONEDNN_CONV_HANDLER(name, kind)                         \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, Handler<kind>,            \
                                ffi::Ffi::Bind()                \
                                    .Arg<ffi::AnyBuffer>()      \
                                    .Arg<ffi::AnyBuffer>()      \
                                    .Ret<ffi::AnyBuffer>()      \
                                    .Attr<ffi::Span<const int64_t>>("strides")  \
                                    .Attr<ffi::Span<const int64_t>>("pad_lo")   \
                                    .Attr<ffi::Span<const int64_t>>("pad_hi")   \
                                    .Attr<ffi::Span<const int64_t>>("dilation") \
                                    .Attr<int64_t>("groups"))

ONEDNN_CONV_HANDLER(OnednnConvForward, Kind::kForward);
ONEDNN_CONV_HANDLER(OnednnConvBackwardData, Kind::kBackwardData);
ONEDNN_CONV_HANDLER(OnednnConvBackwardWeights, Kind::kBackwardWeights);
