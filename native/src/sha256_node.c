/*
 * SHA-256 of 64-byte messages (CommP tree nodes), three implementations:
 *  - sha-ni:   x86 SHA extensions, several independent nodes interleaved so the rounds' latency overlaps;
 *  - openssl:  SHA256_Transform from the OpenSSL linked into node, looked up at run time (no link dependency);
 *  - portable: plain C.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sha256_node.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t K256[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV256[8] = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* The second block of a 64-byte message: 0x80, 55 zero bytes, 64-bit big-endian bit length 512. */
static const uint8_t PAD_BLOCK[64] = {
  0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00,
};

/* W[t] + K[t] of the padding block, computed once. */
static uint32_t PAD_WK[64] __attribute__((aligned(16)));

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static inline uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void schedule(uint32_t W[64], const uint8_t block[64]) {
  for (int t = 0; t < 16; t++) W[t] = load_be32(block + 4 * t);
  for (int t = 16; t < 64; t++) {
    uint32_t s0 = ROR(W[t - 15], 7) ^ ROR(W[t - 15], 18) ^ (W[t - 15] >> 3);
    uint32_t s1 = ROR(W[t - 2], 17) ^ ROR(W[t - 2], 19) ^ (W[t - 2] >> 10);
    W[t] = W[t - 16] + s0 + W[t - 7] + s1;
  }
}

/* Rounds with a ready W[t]+K[t]. */
static inline void rounds_wk(uint32_t s[8], const uint32_t WK[64]) {
  uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
  for (int t = 0; t < 64; t++) {
    uint32_t S1 = ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = h + S1 + ch + WK[t];
    uint32_t S0 = ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22);
    uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = S0 + mj;
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

static void store_digest_trunc(uint8_t out[32], const uint32_t s[8]) {
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(s[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s[i] >> 8);
    out[4 * i + 3] = (uint8_t)s[i];
  }
  out[31] &= 0x3f;
}

/* ---------------------------------------------------------------- portable */

static void pairs_portable(uint8_t *out, const uint8_t *in, size_t n) {
  uint32_t W[64];
  for (size_t i = 0; i < n; i++) {
    uint32_t s[8];
    memcpy(s, IV256, sizeof s);
    schedule(W, in + 64 * i);
    for (int t = 0; t < 64; t++) W[t] += K256[t];
    rounds_wk(s, W);
    rounds_wk(s, PAD_WK);
    store_digest_trunc(out + 32 * i, s); /* in block i fully read before out[i] (at <= 64i) is written */
  }
}

/* ---------------------------------------------------------------- openssl (SHA256_Transform in node) */

typedef void (*sha256_transform_fn)(void *ctx, const unsigned char *data);
static sha256_transform_fn ossl_transform;

/* SHA256_CTX is { unsigned int h[8]; Nl, Nh; data[16]; num, md_len; }; Transform only touches h. */
typedef struct {
  uint32_t h[8];
  uint32_t rest[24];
} ossl_ctx;

static void pairs_openssl(uint8_t *out, const uint8_t *in, size_t n) {
  ossl_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  for (size_t i = 0; i < n; i++) {
    memcpy(ctx.h, IV256, sizeof IV256);
    ossl_transform(&ctx, in + 64 * i);
    ossl_transform(&ctx, PAD_BLOCK);
    store_digest_trunc(out + 32 * i, ctx.h);
  }
}

/* ---------------------------------------------------------------- x86 SHA-NI */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#define NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))
#define NI_INLINE static inline __attribute__((always_inline)) NI_TARGET

static uint32_t NI_K[64] __attribute__((aligned(16)));
static uint32_t NI_IV[8] __attribute__((aligned(16))); /* ABEF, CDGH as loaded vectors */

static int cpu_has_sha_ni(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  int sha = (b >> 29) & 1;
  return ssse3 && sse41 && sha;
}

NI_TARGET static void ni_init(void) {
  memcpy(NI_K, K256, sizeof K256);
  __m128i tmp = _mm_loadu_si128((const __m128i *)&IV256[0]);
  __m128i s1 = _mm_loadu_si128((const __m128i *)&IV256[4]);
  tmp = _mm_shuffle_epi32(tmp, 0xB1);          /* CDAB */
  s1 = _mm_shuffle_epi32(s1, 0x1B);            /* EFGH */
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);    /* ABEF */
  s1 = _mm_blend_epi16(s1, tmp, 0xF0);         /* CDGH */
  _mm_store_si128((__m128i *)&NI_IV[0], s0);
  _mm_store_si128((__m128i *)&NI_IV[4], s1);
}

/* L independent nodes, interleaved. */
NI_INLINE void ni_lanes(uint8_t *out, const uint8_t *in, const int L) {
  const __m128i MASK = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  const __m128i IV0 = _mm_load_si128((const __m128i *)&NI_IV[0]);
  const __m128i IV1 = _mm_load_si128((const __m128i *)&NI_IV[4]);
  __m128i S0[4], S1[4], H0[4], H1[4], M[4][4], X[4];

  for (int l = 0; l < L; l++) { S0[l] = IV0; S1[l] = IV1; }
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) {
    const __m128i k = _mm_load_si128((const __m128i *)&NI_K[4 * i]);
    for (int l = 0; l < L; l++) {
      if (i < 4) {
        M[l][i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(in + 64 * l + 16 * i)), MASK);
      } else {
        __m128i t = _mm_sha256msg1_epu32(M[l][i & 3], M[l][(i + 1) & 3]);
        t = _mm_add_epi32(t, _mm_alignr_epi8(M[l][(i + 3) & 3], M[l][(i + 2) & 3], 4));
        M[l][i & 3] = _mm_sha256msg2_epu32(t, M[l][(i + 3) & 3]);
      }
      X[l] = _mm_add_epi32(M[l][i & 3], k);
      S1[l] = _mm_sha256rnds2_epu32(S1[l], S0[l], X[l]);
    }
    for (int l = 0; l < L; l++) S0[l] = _mm_sha256rnds2_epu32(S0[l], S1[l], _mm_shuffle_epi32(X[l], 0x0E));
  }
  for (int l = 0; l < L; l++) {
    S0[l] = H0[l] = _mm_add_epi32(S0[l], IV0);
    S1[l] = H1[l] = _mm_add_epi32(S1[l], IV1);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) {
    const __m128i wk = _mm_load_si128((const __m128i *)&PAD_WK[4 * i]);
    const __m128i wk2 = _mm_shuffle_epi32(wk, 0x0E);
    for (int l = 0; l < L; l++) S1[l] = _mm_sha256rnds2_epu32(S1[l], S0[l], wk);
    for (int l = 0; l < L; l++) S0[l] = _mm_sha256rnds2_epu32(S0[l], S1[l], wk2);
  }
  const __m128i trunc = _mm_set_epi32(0x3fffffff, -1, -1, -1); /* byte 31 is the top byte of the last dword */
  for (int l = 0; l < L; l++) {
    __m128i s0 = _mm_add_epi32(S0[l], H0[l]);
    __m128i s1 = _mm_add_epi32(S1[l], H1[l]);
    __m128i tmp = _mm_shuffle_epi32(s0, 0x1B);     /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);              /* DCHG */
    s0 = _mm_blend_epi16(tmp, s1, 0xF0);           /* DCBA */
    s1 = _mm_alignr_epi8(s1, tmp, 8);              /* HGFE */
    _mm_storeu_si128((__m128i *)(out + 32 * l), _mm_shuffle_epi8(s0, MASK));
    _mm_storeu_si128((__m128i *)(out + 32 * l + 16), _mm_and_si128(_mm_shuffle_epi8(s1, MASK), trunc));
  }
}

/* All of a batch's inputs are loaded before any output is stored, so out == in is safe. */
NI_TARGET static void pairs_ni1(uint8_t *out, const uint8_t *in, size_t n) {
  for (size_t i = 0; i < n; i++) ni_lanes(out + 32 * i, in + 64 * i, 1);
}
NI_TARGET static void pairs_ni2(uint8_t *out, const uint8_t *in, size_t n) {
  size_t i = 0;
  for (; i + 2 <= n; i += 2) ni_lanes(out + 32 * i, in + 64 * i, 2);
  for (; i < n; i++) ni_lanes(out + 32 * i, in + 64 * i, 1);
}
NI_TARGET static void pairs_ni4(uint8_t *out, const uint8_t *in, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ni_lanes(out + 32 * i, in + 64 * i, 4);
  for (; i < n; i++) ni_lanes(out + 32 * i, in + 64 * i, 1);
}
#endif

/* ---------------------------------------------------------------- selection */

enum { IMPL_NI4, IMPL_NI2, IMPL_NI1, IMPL_OPENSSL, IMPL_PORTABLE, IMPL_COUNT };
/* Fastest first. On an AMD EPYC (Zen) here: 4 lanes ~27 M nodes/s, 2 lanes ~24, 1 lane ~23, OpenSSL ~10-13. */
static node_impl impls[IMPL_COUNT] = {
  { "sha-ni", NULL }, { "sha-ni-x2", NULL }, { "sha-ni-x1", NULL }, { "openssl", NULL }, { "portable", pairs_portable },
};
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_impls(void) {
  uint32_t W[64];
  schedule(W, PAD_BLOCK);
  for (int t = 0; t < 64; t++) PAD_WK[t] = W[t] + K256[t];
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_sha_ni()) {
    ni_init();
    impls[IMPL_NI4].pairs = pairs_ni4;
    impls[IMPL_NI2].pairs = pairs_ni2;
    impls[IMPL_NI1].pairs = pairs_ni1;
  }
#endif
  void *sym = dlsym(RTLD_DEFAULT, "SHA256_Transform");
  if (sym != NULL) {
    ossl_transform = (sha256_transform_fn)sym;
    impls[IMPL_OPENSSL].pairs = pairs_openssl;
  }
}

const node_impl *node_impl_get(const char *want) {
  pthread_once(&init_once, init_impls);
  if (want == NULL || want[0] == '\0') {
    for (int i = 0; i < IMPL_COUNT; i++) {
      if (impls[i].pairs != NULL) return &impls[i];
    }
    return &impls[IMPL_PORTABLE];
  }
  for (int i = 0; i < IMPL_COUNT; i++) {
    if (strcmp(impls[i].name, want) == 0) return impls[i].pairs != NULL ? &impls[i] : NULL;
  }
  return NULL;
}

void node_hash(const node_impl *impl, uint8_t out[32], const uint8_t left[32], const uint8_t right[32]) {
  uint8_t buf[64];
  memcpy(buf, left, 32);
  memcpy(buf + 32, right, 32);
  impl->pairs(out, buf, 1);
}
