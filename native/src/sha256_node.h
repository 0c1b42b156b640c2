/*
 * CommP tree node hashing: node = SHA-256(left || right) with the top two bits of the last byte cleared.
 * A node hash is always exactly two SHA-256 compressions: the 64 data bytes, then the constant padding block
 * (0x80, zeros, bit length 512), whose message schedule is precomputed.
 */
#ifndef PACKER_SHA256_NODE_H
#define PACKER_SHA256_NODE_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = node(in[2i], in[2i+1]) for i < n: reads 64*n bytes, writes 32*n bytes. out == in is allowed. */
typedef void (*node_pairs_fn)(uint8_t *out, const uint8_t *in, size_t n);

typedef struct {
  const char *name;
  node_pairs_fn pairs;
} node_impl;

/* Selects the implementation: "sha-ni" (x86 SHA extensions, runtime-detected, 4 nodes interleaved; also
 * "sha-ni-x2", "sha-ni-x1"), "openssl" (SHA256_Transform
 * exported by the node binary, found with dlsym), "portable" (plain C). `want` NULL or "" = fastest available.
 * Returns NULL if the requested one is not available. Thread-safe after the first call. */
const node_impl *node_impl_get(const char *want);

/* One node, with the given implementation. */
void node_hash(const node_impl *impl, uint8_t out[32], const uint8_t left[32], const uint8_t right[32]);

#endif
