/*
 * Streaming CommP (Filecoin unsealed piece commitment) on background threads, with no Node-API dependency.
 *
 * The payload is cut into blocks of COMMP_BLOCK_QUADS * 127 bytes. Each block is Fr32-padded and reduced to
 * the root of its own subtree (level COMMP_BLOCK_LEVEL) by any worker thread; the roots are merged in order
 * into one pending node per tree level. The final partial block, the zero padding up to the piece size and
 * the merge up to the root are done when the writer calls commp_finish.
 *
 * Memory: the caller's chunks are read in place (never copied); each worker owns a leaf buffer of
 * 32 * 4 * COMMP_BLOCK_QUADS bytes. A chunk is handed back (its token returned by commp_poll) once every
 * block overlapping it is merged.
 */
#ifndef PACKER_COMMP_H
#define PACKER_COMMP_H

#include <stddef.h>
#include <stdint.h>

#include "sha256_node.h"

#define COMMP_BLOCK_QUADS 2048u                /* 260,096 payload bytes, 256 KiB of leaves */
#define COMMP_BLOCK_LEVEL 13                   /* log2(4 * COMMP_BLOCK_QUADS) */
#define COMMP_BLOCK_BYTES (127u * COMMP_BLOCK_QUADS)
#define COMMP_MAX_THREADS 8

typedef struct commp commp_t;

typedef struct {
  uint8_t root[32];
  uint8_t height;          /* log2(padded piece size / 32) */
  uint64_t payload_size;   /* bytes written */
  uint64_t padded_size;    /* 32 << height */
} commp_result;

/* notify(arg) is called from a worker thread when commp_poll has something new (chunks to hand back or the
 * result). Calls are coalesced: after a call, the next one comes only after commp_poll ran. */
commp_t *commp_new(const node_impl *impl, int threads, void (*notify)(void *arg), void *arg);

/* Writer thread. `data` must stay valid and unchanged until `token` comes back from commp_poll.
 * Workers start on demand (up to `threads`) and exit after a second without work.
 * Returns 0, -1 (out of memory: not queued) or -2 (queued, but no worker thread could be started). */
int commp_write(commp_t *c, const uint8_t *data, size_t len, void *token);
/* No more writes. Returns 0, or -2 if no worker thread could be started (then it may be called again). */
int commp_finish(commp_t *c);

/* Writer thread: hands back up to `max` tokens of fully hashed chunks; *consumed = payload bytes hashed so far
 * (the bytes after the last full block wait for more data or commp_finish); returns 1 in *done (and fills *result) once the root is known and every token
 * was handed back. */
size_t commp_poll(commp_t *c, void **tokens, size_t max, uint64_t *consumed, int *done, commp_result *result);

/* True while the workers have something to do (a full block not yet merged, or the final step). */
int commp_busy(commp_t *c);

/* Stops and joins the workers (abandoning unfinished work) and hands back every token still held, through
 * `release` (may be NULL). Then frees everything. */
void commp_free(commp_t *c, void (*release)(void *token, void *arg), void *arg);

/* Synchronous one-shot digest of a buffer on the calling thread (tests, benchmarks). */
void commp_oneshot(const node_impl *impl, const uint8_t *data, uint64_t len, commp_result *result);

/* Piece geometry of a payload size: tree height (log2 of the padded size in 32-byte nodes). */
int commp_height_for(uint64_t payload_size);

#endif
