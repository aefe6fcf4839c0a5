/*
 * The device trainer's kernels (everything but the matrix products, which go to cuBLAS).
 *
 * One source, two compilers: NVRTC builds it as CUDA C++ at run time for the GPU, and build.rs builds it
 * as plain C (with BONSAI_EMU defined) into the emulated backend, where every launch runs its blocks one
 * after another with a single thread each. Kernels are therefore written for any power-of-two block
 * size: threads stride over a row, and reductions go through block_sum / block_max.
 *
 * Every kernel takes one KArgs by value (pointers in p, integers in i, floats in f), so both backends
 * launch any kernel the same way; the comment above each kernel names its arguments.
 */

typedef unsigned long long u64;
typedef long long i64;
typedef struct {
    u64 p[8];
    i64 i[8];
    float f[4];
} KArgs;

#ifdef BONSAI_EMU
#include <math.h>
#include <string.h>
typedef struct {
    unsigned x, y, z;
} emu_dim3;
static _Thread_local emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define DEV static inline
#define SHARED static _Thread_local
#define SYNC() ((void)0)
#define KERNEL(name) static void name(const KArgs a)
#else
#define DEV __device__ __forceinline__
#define SHARED __shared__
#define SYNC() __syncthreads()
#define KERNEL(name) extern "C" __global__ void name(const KArgs a)
#endif

#define MAX_THREADS 1024
#define NEG_MAX (-3.402823466e38f)
#define F(k) ((float *)a.p[k])
#define U(k) ((const unsigned *)a.p[k])
#define TID ((i64)threadIdx.x)
#define NT ((i64)blockDim.x)

/* Sum of v over the block (blockDim.x a power of two), returned to every thread. */
DEV float block_sum(float v, float *sh) {
    sh[threadIdx.x] = v;
    SYNC();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        SYNC();
    }
    float r = sh[0];
    SYNC();
    return r;
}

/* Maximum of v over the block, returned to every thread. */
DEV float block_max(float v, float *sh) {
    sh[threadIdx.x] = v;
    SYNC();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        SYNC();
    }
    float r = sh[0];
    SYNC();
    return r;
}

/* A uniform float in [0, 1) from (seed, index): splitmix64, so a dropout mask is a pure function of its
 * seed and can be recomputed by the backward instead of stored. */
DEV float uniform(u64 seed, u64 idx) {
    u64 z = seed + (idx + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* y = x * inv_rms * w per row, inv_rms saved. p: y, inv, x, w. i: width. f: eps. Grid: rows. */
KERNEL(rmsnorm_fwd) {
    SHARED float sh[MAX_THREADS];
    float *y = F(0), *inv = F(1);
    const float *x = F(2), *w = F(3);
    i64 n = a.i[0], r = blockIdx.x;
    const float *xr = x + r * n;
    float *yr = y + r * n;
    float ss = 0.0f;
    for (i64 c = TID; c < n; c += NT) ss += xr[c] * xr[c];
    ss = block_sum(ss, sh);
    float iv = 1.0f / sqrtf(ss / (float)n + a.f[0]);
    if (threadIdx.x == 0) inv[r] = iv;
    for (i64 c = TID; c < n; c += NT) yr[c] = xr[c] * iv * w[c];
}

/* dx (+)= r * dy * w - x * r^3 * mean(dy * w * x). p: dx, dy, x, w, inv. i: width, accumulate. Grid: rows. */
KERNEL(rmsnorm_bwd) {
    SHARED float sh[MAX_THREADS];
    float *dx = F(0);
    const float *dy = F(1), *x = F(2), *w = F(3), *inv = F(4);
    i64 n = a.i[0], acc = a.i[1], r = blockIdx.x;
    const float *dyr = dy + r * n, *xr = x + r * n;
    float *dxr = dx + r * n;
    float dot = 0.0f;
    for (i64 c = TID; c < n; c += NT) dot += dyr[c] * w[c] * xr[c];
    dot = block_sum(dot, sh);
    float iv = inv[r];
    float k = iv * iv * iv * dot / (float)n;
    for (i64 c = TID; c < n; c += NT) {
        float g = iv * dyr[c] * w[c] - xr[c] * k;
        dxr[c] = acc ? dxr[c] + g : g;
    }
}

/* y[r, :] += b. p: y, b. i: width. Grid: rows. */
KERNEL(add_bias) {
    float *y = F(0);
    const float *b = F(1);
    i64 n = a.i[0], r = blockIdx.x;
    for (i64 c = TID; c < n; c += NT) y[r * n + c] += b[c];
}

/* Rotary embedding (rotate_half layout) of the first `heads` head vectors of each row, in place; sign -1
 * rotates back (the backward). p: x, cos, sin. i: row stride, heads, half, seq. f: sign. Grid: rows. */
KERNEL(rope) {
    float *x = F(0);
    const float *cs = F(1), *sn = F(2);
    i64 stride = a.i[0], heads = a.i[1], half = a.i[2], seq = a.i[3], t = blockIdx.x;
    i64 p = t % seq;
    float *row = x + t * stride;
    for (i64 k = TID; k < heads * half; k += NT) {
        i64 h = k / half, i = k % half;
        float *lo = row + h * 2 * half;
        float va = lo[i], vb = lo[i + half];
        float c = cs[p * half + i], s = a.f[0] * sn[p * half + i];
        lo[i] = va * c - vb * s;
        lo[i + half] = vb * c + va * s;
    }
}

/* Live keys of query i: first..=i (the sliding window's, or all earlier ones when window is 0). */
DEV i64 first_live(i64 i, i64 window) { return (window > 0 && i + 1 > window) ? i + 1 - window : 0; }

/* Scores -> causal softmax probabilities in place, saving each row's log-sum-exp. Scores hold a pass of
 * consecutive heads from head h0 on, laid out [head][batch][seq][seq]; lse is [batch][heads][seq].
 * p: scores, lse. i: seq, batch, window, heads, h0. Grid: (heads in the pass) * batch * seq rows. */
KERNEL(attn_softmax) {
    SHARED float sh[MAX_THREADS];
    float *s = F(0), *lse = F(1);
    i64 seq = a.i[0], batch = a.i[1], window = a.i[2], heads = a.i[3], r = blockIdx.x;
    i64 i = r % seq, b = (r / seq) % batch, h = a.i[4] + r / (seq * batch);
    i64 first = first_live(i, window);
    float *row = s + r * seq;
    float m = NEG_MAX;
    for (i64 j = TID; j < seq; j += NT)
        if (j >= first && j <= i) m = fmaxf(m, row[j]);
    m = block_max(m, sh);
    float sum = 0.0f;
    for (i64 j = TID; j < seq; j += NT)
        if (j >= first && j <= i) {
            float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
    sum = block_sum(sum, sh);
    float inv = 1.0f / sum;
    for (i64 j = TID; j < seq; j += NT) row[j] = (j >= first && j <= i) ? row[j] * inv : 0.0f;
    if (threadIdx.x == 0) lse[(b * heads + h) * seq + i] = m + logf(sum);
}

/* The softmax backward with recomputed probabilities: scores -> P = exp(S - lse) and dP -> dS =
 * P * (dP - rowsum(P * dP)), both in place, masked entries 0. p: scores, dp, lse. i: as attn_softmax. */
KERNEL(attn_dsoftmax) {
    SHARED float sh[MAX_THREADS];
    float *s = F(0), *d = F(1);
    const float *lse = F(2);
    i64 seq = a.i[0], batch = a.i[1], window = a.i[2], heads = a.i[3], r = blockIdx.x;
    i64 i = r % seq, b = (r / seq) % batch, h = a.i[4] + r / (seq * batch);
    i64 first = first_live(i, window);
    float *row = s + r * seq, *drow = d + r * seq;
    float l = lse[(b * heads + h) * seq + i];
    float dot = 0.0f;
    for (i64 j = TID; j < seq; j += NT) {
        if (j >= first && j <= i) {
            float p = expf(row[j] - l);
            row[j] = p;
            dot += p * drow[j];
        } else {
            row[j] = 0.0f;
        }
    }
    dot = block_sum(dot, sh);
    for (i64 j = TID; j < seq; j += NT) drow[j] = (j >= first && j <= i) ? row[j] * (drow[j] - dot) : 0.0f;
}

DEV float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

/* act = silu(gate) * up on a fused [rows, 2 * inter] gate|up buffer. p: act, gu. i: inter. Grid: rows. */
KERNEL(swiglu_fwd) {
    float *act = F(0);
    const float *gu = F(1);
    i64 n = a.i[0], r = blockIdx.x;
    const float *g = gu + r * 2 * n, *u = g + n;
    for (i64 c = TID; c < n; c += NT) act[r * n + c] = g[c] * sigmoidf_(g[c]) * u[c];
}

/* Gradients of gate and up (fused dgu) from d act. p: dgu, da, gu. i: inter. Grid: rows. */
KERNEL(swiglu_bwd) {
    float *dgu = F(0);
    const float *da = F(1), *gu = F(2);
    i64 n = a.i[0], r = blockIdx.x;
    const float *g = gu + r * 2 * n, *u = g + n, *dar = da + r * n;
    float *dg = dgu + r * 2 * n, *du = dg + n;
    for (i64 c = TID; c < n; c += NT) {
        float s = sigmoidf_(g[c]);
        du[c] = dar[c] * g[c] * s;
        dg[c] = dar[c] * u[c] * s * (1.0f + g[c] * (1.0f - s));
    }
}

/* dst[k, :] = src[rows[k], :] (also the embedding lookup). p: dst, src, rows(u32). i: width. Grid: len(rows). */
KERNEL(gather_rows) {
    float *dst = F(0);
    const float *src = F(1);
    const unsigned *rows = U(2);
    i64 n = a.i[0], k = blockIdx.x;
    const float *s = src + (i64)rows[k] * n;
    for (i64 c = TID; c < n; c += NT) dst[k * n + c] = s[c];
}

/* dst[rows[k], :] = src[k, :] (the other rows of dst are left alone). p: dst, src, rows(u32). i: width. */
KERNEL(scatter_rows) {
    float *dst = F(0);
    const float *src = F(1);
    const unsigned *rows = U(2);
    i64 n = a.i[0], k = blockIdx.x;
    float *d = dst + (i64)rows[k] * n;
    for (i64 c = TID; c < n; c += NT) d[c] = src[k * n + c];
}

/* Softmax cross-entropy of each row against its target, fused with its gradient: nll[r] =
 * logsumexp(row) - row[target] and row <- weight * (softmax(row) - onehot(target)).
 * p: logits, targets(u32), weights, nll. i: vocab. Grid: rows. */
KERNEL(xent) {
    SHARED float sh[MAX_THREADS];
    float *logits = F(0), *nll = F(3);
    const unsigned *targets = U(1);
    const float *weights = F(2);
    i64 v = a.i[0], r = blockIdx.x;
    float *row = logits + r * v;
    i64 t = targets[r];
    float w = weights[r];
    float tl = row[t];
    float m = NEG_MAX;
    for (i64 j = TID; j < v; j += NT) m = fmaxf(m, row[j]);
    m = block_max(m, sh);
    float sum = 0.0f;
    for (i64 j = TID; j < v; j += NT) {
        float e = expf(row[j] - m);
        row[j] = e;
        sum += e;
    }
    sum = block_sum(sum, sh);
    float scale = w / sum;
    for (i64 j = TID; j < v; j += NT) row[j] = row[j] * scale - (j == t ? w : 0.0f);
    if (threadIdx.x == 0) nll[r] = logf(sum) + m - tl;
}

/* out (+)= x * mask, mask[k] = 0 with probability p else 1 / (1 - p), drawn from (seed, k).
 * p: out, x. i: n, seed (bits of a u64), accumulate. f: p. Grid: any (grid-stride). */
KERNEL(dropout) {
    float *out = F(0);
    const float *x = F(1);
    i64 n = a.i[0], acc = a.i[2];
    u64 seed = (u64)a.i[1];
    float p = a.f[0], keep = 1.0f / (1.0f - a.f[0]);
    for (i64 k = (i64)blockIdx.x * NT + TID; k < n; k += (i64)gridDim.x * NT) {
        float m = uniform(seed, (u64)k) < p ? 0.0f : keep;
        out[k] = acc ? out[k] + x[k] * m : x[k] * m;
    }
}

#ifdef BONSAI_EMU
typedef void (*emu_kernel)(const KArgs a);
static const struct {
    const char *name;
    emu_kernel f;
} EMU_KERNELS[] = {
    {"rmsnorm_fwd", rmsnorm_fwd},
    {"rmsnorm_bwd", rmsnorm_bwd},
    {"add_bias", add_bias},
    {"rope", rope},
    {"attn_softmax", attn_softmax},
    {"attn_dsoftmax", attn_dsoftmax},
    {"swiglu_fwd", swiglu_fwd},
    {"swiglu_bwd", swiglu_bwd},
    {"gather_rows", gather_rows},
    {"scatter_rows", scatter_rows},
    {"xent", xent},
    {"dropout", dropout},
};

/* Runs kernel `name` over `grid` blocks of one thread each; returns -1 for an unknown name. */
int bonsai_emu_launch(const char *name, unsigned grid, const KArgs *args) {
    for (unsigned k = 0; k < sizeof(EMU_KERNELS) / sizeof(EMU_KERNELS[0]); k++) {
        if (strcmp(EMU_KERNELS[k].name, name) != 0) continue;
        emu_dim3 one = {1, 1, 1}, g = {grid, 1, 1}, zero = {0, 0, 0};
        blockDim = one;
        gridDim = g;
        threadIdx = zero;
        for (unsigned b = 0; b < grid; b++) {
            emu_dim3 idx = {b, 0, 0};
            blockIdx = idx;
            EMU_KERNELS[k].f(*args);
        }
        return 0;
    }
    return -1;
}
#endif
