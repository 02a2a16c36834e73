// Bit-packed XNOR-popcount matmul on the CPU, an XLA FFI custom call.
//
// out[i, j] = k - 2 * popcount(a[i, :] XOR b[j, :]) for packed rows a (M, W) and b (N, W) of
// uint32 words (bnnlab.kernels.bitpack's layout: tail bits are 0 in both operands, so they
// never count). Three instruction-set paths, picked at run time from the CPU's features or
// forced by the `isa` attribute (1 scalar, 2 AVX2, 3 AVX-512 VPOPCNTDQ, 0 best available):
//
//   AVX-512  8 output columns per vector: broadcast a 64-bit word of a row of `a`, XOR with
//            the same word of 8 columns of `b`, VPOPCNTQ, VPADDQ.
//   AVX2     the same scheme, 4 columns per vector, popcount by a 4-bit lookup table
//            (VPSHUFB) summed per 64-bit lane by VPSADBW.
//   scalar   64-bit words, __builtin_popcountll (no ISA assumption: portable C++).
//
// The vector paths read `b` as "panels" (8 columns, K-major: one cache line per 64-bit word
// step), built once ahead of time for weights or per call otherwise, so no horizontal sums are
// needed. Blocking: micro-tiles of 4 rows x 4 panels (AVX-512), 2 x 2 (AVX2) or 4 x 4 columns
// (scalar) keep their accumulators in registers while both operands stream through K once;
// tasks of 16 rows x 128 columns keep their part of `b` in L2 and are spread over XLA's own
// intra-op thread pool (no second pool competing for the cores). A convolution gathers its
// patches per task, in L1, instead of materialising an im2col matrix.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Isa : int64_t { kAuto = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3 };

constexpr int kMr = 4;           // micro-tile rows of a
constexpr int kNr = 4;           // micro-tile rows of b
constexpr int64_t kTaskM = 16;   // rows of a per parallel task
constexpr int64_t kTaskN = 128;  // rows of b per parallel task
// Below this many word pairs, threading costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 16;

bool HasAvx2() { return __builtin_cpu_supports("avx2"); }
bool HasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vpopcntdq");
}

struct Args {
  const uint32_t* a;
  const uint32_t* b;
  int32_t* out;
  int64_t m, n, w;
  int32_t k;
  ffi::ThreadPool* pool;
};

// Runs item(0..total-1) on XLA's intra-op thread pool and the calling thread. Items are
// claimed from a shared counter, so the caller finishes the work alone if the pool is busy
// (no deadlock when the custom call itself runs on a pool thread), and returns once every
// item is done. Helpers that start late find no item left; they only touch the shared state,
// which they co-own.
struct Work {
  std::function<void(int64_t)> item;
  int64_t total;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void Drain() {
    for (int64_t i = next.fetch_add(1); i < total; i = next.fetch_add(1)) {
      item(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

void ParallelFor(ffi::ThreadPool* pool, int64_t total, bool worth_it,
                 const std::function<void(int64_t)>& item) {
  const int64_t threads = pool == nullptr ? 1 : pool->num_threads();
  if (!worth_it || threads <= 1 || total <= 1) {
    for (int64_t i = 0; i < total; ++i) item(i);
    return;
  }
  auto work = std::make_shared<Work>();
  work->item = item;
  work->total = total;
  for (int64_t h = 1; h < std::min(threads, total); ++h) pool->Schedule([work] { work->Drain(); });
  work->Drain();
  while (work->done.load(std::memory_order_acquire) < total) std::this_thread::yield();
}

// ------------------------------------------------------------------------------- scalar

template <int MR, int NR>
void TileScalar(const Args& p, int64_t i0, int64_t j0) {
  uint64_t acc[MR][NR] = {};
  const int64_t pairs = p.w / 2;
  for (int64_t t = 0; t < pairs; ++t) {
    uint64_t av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) std::memcpy(&av[i], p.a + (i0 + i) * p.w + 2 * t, 8);
    for (int j = 0; j < NR; ++j) std::memcpy(&bv[j], p.b + (j0 + j) * p.w + 2 * t, 8);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += __builtin_popcountll(av[i] ^ bv[j]);
  }
  if (p.w % 2) {
    const int64_t t = p.w - 1;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] += __builtin_popcount(p.a[(i0 + i) * p.w + t] ^ p.b[(j0 + j) * p.w + t]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      p.out[(i0 + i) * p.n + j0 + j] = p.k - 2 * static_cast<int32_t>(acc[i][j]);
}

// ------------------------------------------------------------------- AVX2 popcount per byte

__attribute__((target("avx2"))) inline __m256i ByteCounts(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                       2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, nibble));
  const __m256i hi =
      _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
  return _mm256_add_epi8(lo, hi);
}

// --------------------------------------------------------------------- panels (AVX-512, AVX2)
//
// The vector paths work across output columns, so no horizontal reduction is ever needed
// (with K of a few hundred bits, reducing 16 accumulators per micro-tile cost more than the
// popcounts): `b` is laid out as panels of 8 columns, K-major, one 64-bit word per lane
// (panel[g][t][lane] = 64 bits t of column 8g + lane); each 64-bit word of a row of `a` is
// broadcast and XORed with a whole panel row, acc[lane] += popcount(...).

// 64-bit word t of a row of `w` 32-bit words (the odd last word has a zero high half).
inline uint64_t Word64(const uint32_t* row, int64_t w, int64_t t) {
  if (2 * t + 1 < w) {
    uint64_t v;
    std::memcpy(&v, row + 2 * t, 8);
    return v;
  }
  return row[2 * t];
}

// panel: (ceil(n / 8), w64, 8) uint64.
void PackPanels(const Args& p, int64_t w64, uint64_t* panel) {
  const int64_t groups = (p.n + 7) / 8;
  ParallelFor(p.pool, groups, p.n * p.w >= kParallelWork, [&](int64_t g) {
    const uint32_t* rows[8];
    for (int lane = 0; lane < 8; ++lane)
      rows[lane] = 8 * g + lane < p.n ? p.b + (8 * g + lane) * p.w : nullptr;
    uint64_t* dst = panel + g * w64 * 8;
    for (int64_t t = 0; t < w64; ++t)
      for (int lane = 0; lane < 8; ++lane)
        dst[t * 8 + lane] = rows[lane] ? Word64(rows[lane], p.w, t) : 0;
  });
}

#define BNNLAB_AVX512 __attribute__((target("avx512f,avx512vl,avx512vpopcntdq")))

// AVX-512: 8 columns per zmm, VPOPCNTQ. `rows`: the MR rows of `a` (for a convolution,
// gathered patches) that output rows i0.. use.
template <int MR, int NV>
BNNLAB_AVX512 void TileAvx512(const Args& p, const uint64_t* panel, int64_t w64,
                              const uint32_t* const* rows, int64_t i0, int64_t g0) {
  __m512i acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  const int64_t stride = w64 * 8;  // uint64s between consecutive panels
  for (int64_t t = 0; t < w64; ++t) {
    __m512i bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(panel + (g0 + v) * stride + t * 8);
    for (int i = 0; i < MR; ++i) {
      const uint64_t word = Word64(rows[i], p.w, t);
      const __m512i av = _mm512_set1_epi64(static_cast<long long>(word));
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_add_epi64(acc[i][v], _mm512_popcnt_epi64(_mm512_xor_si512(av, bv[v])));
    }
  }
  const __m512i k = _mm512_set1_epi64(p.k);
  for (int i = 0; i < MR; ++i) {
    int32_t* out = p.out + (i0 + i) * p.n;
    for (int v = 0; v < NV; ++v) {
      const int64_t col = 8 * (g0 + v);
      const __m512i dot = _mm512_sub_epi64(k, _mm512_slli_epi64(acc[i][v], 1));
      const int64_t left = std::min<int64_t>(8, p.n - col);
      const __mmask8 mask = static_cast<__mmask8>((1u << left) - 1u);
      _mm256_mask_storeu_epi32(out + col, mask, _mm512_cvtepi64_epi32(dot));
    }
  }
}

using PanelTileFn = void (*)(const Args&, const uint64_t*, int64_t, const uint32_t* const*,
                             int64_t, int64_t);
constexpr int kNv = 4;  // panels (of 8 columns) per micro-tile

const PanelTileFn TileAvx512Table[kMr][kNv] = {
    {TileAvx512<1, 1>, TileAvx512<1, 2>, TileAvx512<1, 3>, TileAvx512<1, 4>},
    {TileAvx512<2, 1>, TileAvx512<2, 2>, TileAvx512<2, 3>, TileAvx512<2, 4>},
    {TileAvx512<3, 1>, TileAvx512<3, 2>, TileAvx512<3, 3>, TileAvx512<3, 4>},
    {TileAvx512<4, 1>, TileAvx512<4, 2>, TileAvx512<4, 3>, TileAvx512<4, 4>},
};

// The AVX2 version of the same scheme on the same panels: each panel is two 256-bit halves
// (4 columns each), the popcount of every 64-bit lane comes from the nibble table summed by
// VPSADBW — again no horizontal reduction. 2 rows x 2 panels: 8 accumulators, within the 16
// ymm registers.
constexpr int kMr2 = 2;
constexpr int kNv2 = 2;

template <int MR, int NV>
__attribute__((target("avx2"))) void TilePanelAvx2(const Args& p, const uint64_t* panel,
                                                   int64_t w64, const uint32_t* const* rows,
                                                   int64_t i0, int64_t g0) {
  __m256i acc[MR][NV][2];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v][0] = acc[i][v][1] = _mm256_setzero_si256();
  const __m256i zero = _mm256_setzero_si256();
  const int64_t stride = w64 * 8;
  for (int64_t t = 0; t < w64; ++t) {
    __m256i bv[NV][2];
    for (int v = 0; v < NV; ++v)
      for (int h = 0; h < 2; ++h)
        bv[v][h] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(panel + (g0 + v) * stride + t * 8 + 4 * h));
    for (int i = 0; i < MR; ++i) {
      const uint64_t word = Word64(rows[i], p.w, t);
      const __m256i av = _mm256_set1_epi64x(static_cast<long long>(word));
      for (int v = 0; v < NV; ++v)
        for (int h = 0; h < 2; ++h)
          acc[i][v][h] = _mm256_add_epi64(
              acc[i][v][h], _mm256_sad_epu8(ByteCounts(_mm256_xor_si256(av, bv[v][h])), zero));
    }
  }
  for (int i = 0; i < MR; ++i) {
    int32_t* out = p.out + (i0 + i) * p.n;
    for (int v = 0; v < NV; ++v)
      for (int h = 0; h < 2; ++h) {
        alignas(32) int64_t lanes[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[i][v][h]);
        for (int l = 0; l < 4; ++l) {
          const int64_t col = 8 * (g0 + v) + 4 * h + l;
          if (col < p.n) out[col] = p.k - 2 * static_cast<int32_t>(lanes[l]);
        }
      }
  }
}

const PanelTileFn TilePanelAvx2Table[kMr2][kNv2] = {
    {TilePanelAvx2<1, 1>, TilePanelAvx2<1, 2>},
    {TilePanelAvx2<2, 1>, TilePanelAvx2<2, 2>},
};

// A binary conv2d as a matmul whose rows are gathered patches: output row r = (batch, oh, ow)
// reads, for each tap (i, j), the c32 words of input pixel (oh·sh − pt + i, ow·sw − pl + j),
// or zero words (= +1 padding) outside the image — im2col per task, in L1, instead of a
// materialised patch matrix.
struct ConvGeom {
  const uint32_t* x;  // (batch, h, w, c32) words
  int64_t h, w, c32, kh, kw, sh, sw, pt, pl, ho, wo;

  void Gather(int64_t row, uint32_t* dst) const {
    const int64_t b = row / (ho * wo), oh = row / wo % ho, ow = row % wo;
    for (int64_t i = 0; i < kh; ++i) {
      for (int64_t j = 0; j < kw; ++j, dst += c32) {
        const int64_t ih = oh * sh - pt + i, iw = ow * sw - pl + j;
        if (ih < 0 || ih >= h || iw < 0 || iw >= w) {
          std::memset(dst, 0, c32 * sizeof(uint32_t));
        } else {
          std::memcpy(dst, x + ((b * h + ih) * w + iw) * c32, c32 * sizeof(uint32_t));
        }
      }
    }
  }
};

// The panel paths (AVX-512 or AVX2 tiles; the table's shape is the micro-tile's maximum).
// `prepacked`: `b` already in the panel layout (weights laid out once, ahead of time), or null.
// `conv`: rows of `a` are gathered patches of this convolution (p.a unused), or null.
template <int MR, int NV>
void RunPanels(const PanelTileFn (*table)[NV], const Args& p, const uint64_t* prepacked,
               const ConvGeom* conv) {
  const int64_t w64 = (p.w + 1) / 2;
  const int64_t groups = (p.n + 7) / 8;
  const uint64_t* panel = prepacked;
  if (panel == nullptr) {
    // Reused across calls on the same thread: no allocation per call once warmed up.
    thread_local std::vector<uint64_t> storage;
    const size_t need = static_cast<size_t>(groups * w64 * 8 + 8);
    if (storage.size() < need) storage.resize(need);
    auto* aligned = reinterpret_cast<uint64_t*>(
        (reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t{63});
    PackPanels(p, w64, aligned);
    panel = aligned;
  }
  const int64_t tasks_m = (p.m + kTaskM - 1) / kTaskM;
  const int64_t groups_per_task = kTaskN / 8;
  const int64_t tasks_n = (groups + groups_per_task - 1) / groups_per_task;
  ParallelFor(p.pool, tasks_m * tasks_n, p.m * p.n * p.w >= kParallelWork, [&](int64_t task) {
    const int64_t tm = task / tasks_n, tn = task % tasks_n;
    const int64_t i_end = std::min(p.m, (tm + 1) * kTaskM);
    const int64_t g_end = std::min(groups, (tn + 1) * groups_per_task);
    const uint32_t* rows[kTaskM];
    thread_local std::vector<uint32_t> patches;
    if (conv != nullptr) {
      if (patches.size() < static_cast<size_t>(kTaskM * p.w)) patches.resize(kTaskM * p.w);
      for (int64_t r = tm * kTaskM; r < i_end; ++r) {
        uint32_t* dst = patches.data() + (r - tm * kTaskM) * p.w;
        conv->Gather(r, dst);
        rows[r - tm * kTaskM] = dst;
      }
    } else {
      for (int64_t r = tm * kTaskM; r < i_end; ++r) rows[r - tm * kTaskM] = p.a + r * p.w;
    }
    for (int64_t i0 = tm * kTaskM; i0 < i_end; i0 += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, i_end - i0));
      for (int64_t g0 = tn * groups_per_task; g0 < g_end; g0 += NV) {
        const int nv = static_cast<int>(std::min<int64_t>(NV, g_end - g0));
        table[mr - 1][nv - 1](p, panel, w64, rows + (i0 - tm * kTaskM), i0, g0);
      }
    }
  });
}

void RunPanelsIsa(int64_t isa, const Args& p, const uint64_t* prepacked,
                  const ConvGeom* conv = nullptr) {
  if (isa == kAvx512) {
    RunPanels<kMr, kNv>(TileAvx512Table, p, prepacked, conv);
  } else {
    RunPanels<kMr2, kNv2>(TilePanelAvx2Table, p, prepacked, conv);
  }
}

// ------------------------------------------------------------------------ scalar driver, FFI

using TileFn = void (*)(const Args&, int64_t, int64_t);

const TileFn TileScalarTable[kMr][kNr] = {
    {TileScalar<1, 1>, TileScalar<1, 2>, TileScalar<1, 3>, TileScalar<1, 4>},
    {TileScalar<2, 1>, TileScalar<2, 2>, TileScalar<2, 3>, TileScalar<2, 4>},
    {TileScalar<3, 1>, TileScalar<3, 2>, TileScalar<3, 3>, TileScalar<3, 4>},
    {TileScalar<4, 1>, TileScalar<4, 2>, TileScalar<4, 3>, TileScalar<4, 4>},
};

void RunScalar(const Args& p) {
  const int64_t tasks_m = (p.m + kTaskM - 1) / kTaskM;
  const int64_t tasks_n = (p.n + kTaskN - 1) / kTaskN;
  ParallelFor(p.pool, tasks_m * tasks_n, p.m * p.n * p.w >= kParallelWork, [&](int64_t task) {
    const int64_t tm = task / tasks_n, tn = task % tasks_n;
    const int64_t i_end = std::min(p.m, (tm + 1) * kTaskM);
    const int64_t j_end = std::min(p.n, (tn + 1) * kTaskN);
    for (int64_t i0 = tm * kTaskM; i0 < i_end; i0 += kMr) {
      const int mr = static_cast<int>(std::min<int64_t>(kMr, i_end - i0));
      for (int64_t j0 = tn * kTaskN; j0 < j_end; j0 += kNr) {
        const int nr = static_cast<int>(std::min<int64_t>(kNr, j_end - j0));
        TileScalarTable[mr - 1][nr - 1](p, i0, j0);
      }
    }
  });
}

int64_t Supported() {
  int64_t bits = int64_t{1} << kScalar;
  if (HasAvx2()) bits |= int64_t{1} << kAvx2;
  if (HasAvx512()) bits |= int64_t{1} << kAvx512;
  return bits;
}

ffi::Error XnorMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> a, ffi::Buffer<ffi::U32> b,
                      ffi::ResultBuffer<ffi::S32> out, int64_t k, int64_t isa) {
  const auto ad = a.dimensions();
  const auto bd = b.dimensions();
  if (ad.size() != 2 || bd.size() != 2 || ad[1] != bd[1]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_matmul: expected a (M, W) and b (N, W) uint32 words");
  }
  if (isa == kAuto) isa = HasAvx512() ? kAvx512 : HasAvx2() ? kAvx2 : kScalar;
  if (isa < kScalar || isa > kAvx512 || !(Supported() & (int64_t{1} << isa))) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_matmul: instruction set not supported by this CPU");
  }
  const Args p{a.typed_data(), b.typed_data(), out->typed_data(), ad[0], bd[0], ad[1],
               static_cast<int32_t>(k), &pool};
  if (p.m == 0 || p.n == 0) return ffi::Error::Success();
  if (isa == kScalar) {
    RunScalar(p);
  } else {
    RunPanelsIsa(isa, p, nullptr);
  }
  return ffi::Error::Success();
}

// Whether `isa` names a panel path (AVX2 or AVX-512) this CPU runs.
bool PanelIsaOk(int64_t isa) {
  return (isa == kAvx2 || isa == kAvx512) && (Supported() & (int64_t{1} << isa));
}

// The panel path `isa` (2 AVX2, 3 AVX-512) with `b` given as panels (G, W64 * 16) uint32 =
// (G, W64, 8) uint64, the layout bnnlab.kernels.cpu.panels builds; `n` is b's true row count.
ffi::Error XnorMatmulPanels(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> a,
                            ffi::Buffer<ffi::U32> panels, ffi::ResultBuffer<ffi::S32> out,
                            int64_t k, int64_t n, int64_t isa) {
  const auto ad = a.dimensions();
  const auto pd = panels.dimensions();
  const int64_t w64 = ad.size() == 2 ? (ad[1] + 1) / 2 : -1;
  if (ad.size() != 2 || pd.size() != 2 || pd[0] != (n + 7) / 8 || pd[1] != w64 * 16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_matmul_panels: expected a (M, W) words and panels "
                      "(ceil(N/8), ceil(W/2)*16)");
  }
  if (!PanelIsaOk(isa)) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_matmul_panels: isa must be a supported AVX2/AVX-512 path");
  }
  const Args p{a.typed_data(), nullptr, out->typed_data(), ad[0], n, ad[1],
               static_cast<int32_t>(k), &pool};
  if (p.m == 0 || p.n == 0) return ffi::Error::Success();
  RunPanelsIsa(isa, p, reinterpret_cast<const uint64_t*>(panels.typed_data()));
  return ffi::Error::Success();
}

// Binary conv2d on packed NHWC words x (batch, h, w, c32) with the kernel as panels of its
// (O, kh·kw·c32) words; out (batch·ho·wo, n) int32 dot products with +1 padding (pad = the
// explicit (top, left) padding; bottom/right follow from ho, wo).
ffi::Error XnorConv2dPanels(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> x,
                            ffi::Buffer<ffi::U32> panels, ffi::ResultBuffer<ffi::S32> out,
                            int64_t k, int64_t n, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                            int64_t pt, int64_t pl, int64_t ho, int64_t wo, int64_t isa) {
  const auto xd = x.dimensions();
  const auto pd = panels.dimensions();
  if (xd.size() != 4 || pd.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_conv2d_panels: expected x (N, H, W, C/32) and 2-D panels");
  }
  const int64_t w = kh * kw * xd[3];
  if (pd[0] != (n + 7) / 8 || pd[1] != (w + 1) / 2 * 16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_conv2d_panels: panels do not match the kernel shape");
  }
  if (!PanelIsaOk(isa)) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "bnnlab_xnor_conv2d_panels: isa must be a supported AVX2/AVX-512 path");
  }
  const ConvGeom geom{x.typed_data(), xd[1], xd[2], xd[3], kh, kw, sh, sw, pt, pl, ho, wo};
  const Args p{nullptr, nullptr, out->typed_data(), xd[0] * ho * wo, n, w,
               static_cast<int32_t>(k), &pool};
  if (p.m == 0 || p.n == 0) return ffi::Error::Success();
  RunPanelsIsa(isa, p, reinterpret_cast<const uint64_t*>(panels.typed_data()), &geom);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnnlabXnorConv2dPanels, XnorConv2dPanels,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("n")
                                  .Attr<int64_t>("kh")
                                  .Attr<int64_t>("kw")
                                  .Attr<int64_t>("sh")
                                  .Attr<int64_t>("sw")
                                  .Attr<int64_t>("pt")
                                  .Attr<int64_t>("pl")
                                  .Attr<int64_t>("ho")
                                  .Attr<int64_t>("wo")
                                  .Attr<int64_t>("isa"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnnlabXnorMatmulPanels, XnorMatmulPanels,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("n")
                                  .Attr<int64_t>("isa"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnnlabXnorMatmul, XnorMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("isa"));

// Bit i set: instruction set i (1 scalar, 2 AVX2, 3 AVX-512 VPOPCNTDQ) runs on this CPU.
extern "C" int64_t bnnlab_supported_isas() { return Supported(); }
