#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "commp.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 64            /* blocks claimed but not yet merged, at most */
#define MAX_LEVEL 64

typedef struct chunk {
  const uint8_t *p;
  size_t len;
  uint64_t start;
  void *token;
  struct chunk *next;
} chunk;

typedef struct {
  const uint8_t *p;
  size_t n;
} seg;

typedef struct {
  commp_t *c;
  uint8_t *leaves;  /* (4 * COMMP_BLOCK_QUADS + 1) nodes */
  seg *segs;
  size_t segs_cap;
} worker;

struct commp {
  const node_impl *impl;
  pthread_mutex_t mu;
  pthread_cond_t cv;

  chunk *head, *tail;
  uint64_t total;          /* bytes written */
  int finished, aborting;

  uint64_t next_claim;     /* next full block to hash */
  uint64_t next_merge;     /* next block root to merge */
  uint8_t ring_root[RING][32];
  uint8_t ring_done[RING];

  uint8_t stack[MAX_LEVEL][32]; /* pending left node per level (touched only by the merging thread) */
  uint64_t stack_mask;

  int final_claimed, final_done;
  commp_result result;
  uint64_t consumed;       /* payload bytes fully hashed and merged */

  int notify_pending;
  void (*notify)(void *);
  void *notify_arg;

  int nthreads;            /* worker slots (the most threads at once) */
  int live;                /* threads running */
  pthread_t threads[COMMP_MAX_THREADS];
  uint8_t slot_state[COMMP_MAX_THREADS]; /* SLOT_EMPTY, SLOT_RUNNING, SLOT_EXITED (to join) */
  worker workers[COMMP_MAX_THREADS];
};

enum { SLOT_EMPTY, SLOT_RUNNING, SLOT_EXITED };

/* A worker with nothing to do for this long exits; the next write starts one again. So an abandoned hasher
 * (never finished nor freed) holds no thread, only the bytes it was given. */
#define IDLE_EXIT_SECONDS 1

/* ---------------------------------------------------------------- zero subtrees */

static uint8_t ZERO[MAX_LEVEL + 1][32];
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_init(void) {
  const node_impl *p = node_impl_get("portable");
  memset(ZERO[0], 0, 32);
  for (int l = 1; l <= MAX_LEVEL; l++) node_hash(p, ZERO[l], ZERO[l - 1], ZERO[l - 1]);
}

/* ---------------------------------------------------------------- geometry */

int commp_height_for(uint64_t payload_size) {
  uint64_t quads = payload_size == 0 ? 1 : (payload_size + 126) / 127;
  int h = 2; /* 4 leaves per quad */
  uint64_t q = 1;
  while (q < quads) { q <<= 1; h++; }
  return h;
}

/* ---------------------------------------------------------------- Fr32 */

static inline uint64_t ld64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline void st64(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

#define TOP2 0x3fffffffffffffffULL

/* 127 payload bytes -> 4 leaves (128 bytes): 254-bit groups as a little-endian bit stream, each followed by two
 * zero bits. Reads only in[0..126]. */
static inline void fr32_quad(const uint8_t *in, uint8_t *out) {
  st64(out + 0, ld64(in + 0));
  st64(out + 8, ld64(in + 8));
  st64(out + 16, ld64(in + 16));
  st64(out + 24, ld64(in + 24) & TOP2);
  for (int k = 0; k < 4; k++) {
    uint64_t v = (ld64(in + 31 + 8 * k) >> 6) | (ld64(in + 39 + 8 * k) << 58);
    st64(out + 32 + 8 * k, k == 3 ? v & TOP2 : v);
  }
  for (int k = 0; k < 4; k++) {
    uint64_t v = (ld64(in + 63 + 8 * k) >> 4) | (ld64(in + 71 + 8 * k) << 60);
    st64(out + 64 + 8 * k, k == 3 ? v & TOP2 : v);
  }
  for (int k = 0; k < 3; k++) {
    st64(out + 96 + 8 * k, (ld64(in + 95 + 8 * k) >> 2) | (ld64(in + 103 + 8 * k) << 62));
  }
  st64(out + 120, (ld64(in + 119) >> 2) & TOP2);
}

/* Pads `quads` quads read from segments (total `len` bytes; the last quad is zero-filled) into `leaves`. */
static void fr32_segments(const seg *s, size_t ns, size_t quads, uint8_t *leaves) {
  size_t i = 0, off = 0;
  uint8_t tmp[127];
  for (size_t q = 0; q < quads; q++) {
    while (i < ns && off == s[i].n) { i++; off = 0; }
    const uint8_t *src;
    if (i < ns && s[i].n - off >= 127) {
      src = s[i].p + off;
      off += 127;
    } else {
      size_t got = 0;
      while (got < 127 && i < ns) {
        size_t take = s[i].n - off;
        if (take > 127 - got) take = 127 - got;
        memcpy(tmp + got, s[i].p + off, take);
        got += take;
        off += take;
        if (off == s[i].n) { i++; off = 0; }
      }
      memset(tmp + got, 0, 127 - got);
      src = tmp;
    }
    fr32_quad(src, leaves + 128 * q);
  }
}

/* ---------------------------------------------------------------- tree */

static void stack_push(commp_t *c, int level, uint8_t node[32]) {
  while (c->stack_mask & (1ULL << level)) {
    node_hash(c->impl, node, c->stack[level], node);
    c->stack_mask &= ~(1ULL << level);
    level++;
  }
  memcpy(c->stack[level], node, 32);
  c->stack_mask |= 1ULL << level;
}

/* Root of a full block: COMMP_BLOCK_QUADS quads -> one node at COMMP_BLOCK_LEVEL. */
static void block_root(const node_impl *impl, const seg *s, size_t ns, uint8_t *leaves, uint8_t out[32]) {
  fr32_segments(s, ns, COMMP_BLOCK_QUADS, leaves);
  size_t n = 4 * COMMP_BLOCK_QUADS;
  while (n > 1) {
    impl->pairs(leaves, leaves, n / 2);
    n /= 2;
  }
  memcpy(out, leaves, 32);
}

/* Last partial block (tail_len < COMMP_BLOCK_BYTES bytes), zero padding and the pending nodes up to the root. */
static void finalize(commp_t *c, const seg *s, size_t ns, uint64_t tail_len, uint8_t *leaves) {
  pthread_once(&zero_once, zero_init);
  int height = commp_height_for(c->total);
  size_t n = 4 * (size_t)((tail_len + 126) / 127);
  fr32_segments(s, ns, n / 4, leaves);
  for (int l = 0; l < height; l++) {
    if (c->stack_mask & (1ULL << l)) {
      /* n <= 1 here: the tail is shorter than a block and the stack only holds levels >= COMMP_BLOCK_LEVEL */
      node_hash(c->impl, leaves, c->stack[l], n == 1 ? leaves : ZERO[l]);
      c->stack_mask &= ~(1ULL << l);
      n = 1;
      continue;
    }
    if (n & 1) {
      memcpy(leaves + 32 * n, ZERO[l], 32);
      n++;
    }
    if (n > 0) c->impl->pairs(leaves, leaves, n / 2);
    n /= 2;
  }
  if (c->stack_mask & (1ULL << height)) {
    memcpy(c->result.root, c->stack[height], 32);
  } else if (n == 1) {
    memcpy(c->result.root, leaves, 32);
  } else {
    memcpy(c->result.root, ZERO[height], 32);
  }
  c->stack_mask = 0;
  c->result.height = (uint8_t)height;
  c->result.payload_size = c->total;
  c->result.padded_size = 32ULL << height;
}

/* ---------------------------------------------------------------- threads */

/* Segments of [a, b) under the lock. */
static size_t gather(commp_t *c, worker *w, uint64_t a, uint64_t b) {
  size_t ns = 0;
  for (chunk *k = c->head; k != NULL && k->start < b; k = k->next) {
    uint64_t end = k->start + k->len;
    if (end <= a) continue;
    uint64_t from = k->start > a ? k->start : a;
    uint64_t to = end < b ? end : b;
    if (ns == w->segs_cap) {
      size_t cap = w->segs_cap ? 2 * w->segs_cap : 64;
      seg *ns2 = realloc(w->segs, cap * sizeof(seg));
      if (ns2 == NULL) abort();
      w->segs = ns2;
      w->segs_cap = cap;
    }
    w->segs[ns].p = k->p + (from - k->start);
    w->segs[ns].n = (size_t)(to - from);
    ns++;
  }
  return ns;
}

static int wake_notify(commp_t *c) {
  if (c->notify_pending) return 0;
  c->notify_pending = 1;
  return 1;
}

static void worker_exit(commp_t *c, worker *w) {
  /* under the lock; after this the commp may be freed as soon as the lock is released */
  c->slot_state[w - c->workers] = SLOT_EXITED;
  c->live--;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  commp_t *c = w->c;
  int timed_out = 0;
#ifdef __linux__
  pthread_setname_np(pthread_self(), "packer-commp"); /* shows in top -H, /proc/<pid>/task/<tid>/comm */
#endif
  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (c->aborting || c->final_done) break;
    uint64_t full = c->total / COMMP_BLOCK_BYTES;
    if (c->next_claim < full && c->next_claim < c->next_merge + RING) {
      timed_out = 0;
      uint64_t k = c->next_claim++;
      size_t ns = gather(c, w, k * COMMP_BLOCK_BYTES, (k + 1) * COMMP_BLOCK_BYTES);
      pthread_mutex_unlock(&c->mu);
      uint8_t root[32];
      block_root(c->impl, w->segs, ns, w->leaves, root);
      pthread_mutex_lock(&c->mu);
      memcpy(c->ring_root[k % RING], root, 32);
      c->ring_done[k % RING] = 1;
      int merged = 0;
      while (c->ring_done[c->next_merge % RING] && !c->aborting) {
        uint8_t node[32];
        memcpy(node, c->ring_root[c->next_merge % RING], 32);
        c->ring_done[c->next_merge % RING] = 0;
        stack_push(c, COMMP_BLOCK_LEVEL, node);
        c->next_merge++;
        merged = 1;
      }
      if (merged) {
        c->consumed = c->next_merge * COMMP_BLOCK_BYTES;
        pthread_cond_broadcast(&c->cv); /* the ring has room again; maybe the final step can run */
        if (wake_notify(c)) {
          pthread_mutex_unlock(&c->mu);
          c->notify(c->notify_arg);
          pthread_mutex_lock(&c->mu);
        }
      }
      continue;
    }
    if (c->finished && !c->final_claimed && c->next_merge == full) {
      c->final_claimed = 1;
      uint64_t a = full * COMMP_BLOCK_BYTES;
      size_t ns = gather(c, w, a, c->total);
      pthread_mutex_unlock(&c->mu);
      finalize(c, w->segs, ns, c->total - a, w->leaves);
      pthread_mutex_lock(&c->mu);
      c->consumed = c->total;
      c->final_done = 1;
      pthread_cond_broadcast(&c->cv);
      if (wake_notify(c)) {
        pthread_mutex_unlock(&c->mu);
        c->notify(c->notify_arg);
        pthread_mutex_lock(&c->mu);
      }
      break;
    }
    if (timed_out && !c->finished) break; /* idle: commp_write starts a worker again when needed */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += IDLE_EXIT_SECONDS;
    timed_out = pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT;
  }
  worker_exit(c, w);
  return NULL;
}

/* Under the lock: starts workers for the work there is, up to the slots. -1 if none runs and none could start. */
static int spawn_workers(commp_t *c) {
  uint64_t full = c->total / COMMP_BLOCK_BYTES;
  uint64_t need = full > c->next_claim ? full - c->next_claim : 0;
  if (c->finished && !c->final_claimed) need++;
  for (int i = 0; i < c->nthreads && (uint64_t)c->live < need && c->live < c->nthreads; i++) {
    if (c->slot_state[i] == SLOT_RUNNING) continue;
    if (c->slot_state[i] == SLOT_EXITED) pthread_join(c->threads[i], NULL); /* it has let go of the lock */
    c->slot_state[i] = SLOT_EMPTY;
    if (pthread_create(&c->threads[i], NULL, worker_main, &c->workers[i]) != 0) break;
    c->slot_state[i] = SLOT_RUNNING;
    c->live++;
  }
  return need > 0 && c->live == 0 ? -1 : 0;
}

commp_t *commp_new(const node_impl *impl, int threads, void (*notify)(void *arg), void *arg) {
  pthread_once(&zero_once, zero_init);
  if (threads < 1) threads = 1;
  if (threads > COMMP_MAX_THREADS) threads = COMMP_MAX_THREADS;
  commp_t *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->impl = impl;
  c->notify = notify;
  c->notify_arg = arg;
  for (int i = 0; i < threads; i++) {
    worker *w = &c->workers[i];
    w->c = c;
    w->leaves = malloc((4 * COMMP_BLOCK_QUADS + 1) * 32);
    if (w->leaves == NULL) {
      for (int j = 0; j < i; j++) free(c->workers[j].leaves);
      free(c);
      return NULL;
    }
  }
  c->nthreads = threads;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  return c;
}

int commp_write(commp_t *c, const uint8_t *data, size_t len, void *token) {
  chunk *k = malloc(sizeof *k);
  if (k == NULL) return -1;
  k->p = data;
  k->len = len;
  k->token = token;
  k->next = NULL;
  pthread_mutex_lock(&c->mu);
  k->start = c->total;
  uint64_t before = c->total / COMMP_BLOCK_BYTES;
  c->total += len;
  if (c->tail) c->tail->next = k; else c->head = k;
  c->tail = k;
  int r = 0;
  if (c->total / COMMP_BLOCK_BYTES != before) {
    pthread_cond_broadcast(&c->cv);
    r = spawn_workers(c) == 0 ? 0 : -2;
  }
  pthread_mutex_unlock(&c->mu);
  return r;
}

int commp_finish(commp_t *c) {
  pthread_mutex_lock(&c->mu);
  c->finished = 1;
  pthread_cond_broadcast(&c->cv);
  int r = spawn_workers(c);
  if (r != 0) c->finished = 0; /* nothing will run: let the caller retry or give up */
  pthread_mutex_unlock(&c->mu);
  return r;
}

size_t commp_poll(commp_t *c, void **tokens, size_t max, uint64_t *consumed, int *done, commp_result *result) {
  size_t n = 0;
  pthread_mutex_lock(&c->mu);
  c->notify_pending = 0;
  while (n < max && c->head != NULL && c->head->start + c->head->len <= c->consumed) {
    chunk *k = c->head;
    c->head = k->next;
    if (c->head == NULL) c->tail = NULL;
    tokens[n++] = k->token;
    free(k);
  }
  *consumed = c->consumed;
  *done = c->final_done && c->head == NULL;
  if (*done && result != NULL) *result = c->result;
  pthread_mutex_unlock(&c->mu);
  return n;
}

int commp_busy(commp_t *c) {
  pthread_mutex_lock(&c->mu);
  int busy = (c->finished && !c->final_done) || c->next_merge < c->total / COMMP_BLOCK_BYTES;
  pthread_mutex_unlock(&c->mu);
  return busy;
}

void commp_free(commp_t *c, void (*release)(void *token, void *arg), void *arg) {
  pthread_mutex_lock(&c->mu);
  c->aborting = 1;
  pthread_cond_broadcast(&c->cv);
  while (c->live > 0) pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < c->nthreads; i++) {
    if (c->slot_state[i] != SLOT_EMPTY) pthread_join(c->threads[i], NULL);
  }
  for (chunk *k = c->head; k != NULL;) {
    chunk *next = k->next;
    if (release) release(k->token, arg);
    free(k);
    k = next;
  }
  for (int i = 0; i < c->nthreads; i++) {
    free(c->workers[i].leaves);
    free(c->workers[i].segs);
  }
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
}

void commp_oneshot(const node_impl *impl, const uint8_t *data, uint64_t len, commp_result *result) {
  pthread_once(&zero_once, zero_init);
  commp_t c;
  memset(&c, 0, sizeof c);
  c.impl = impl;
  c.total = len;
  uint8_t *leaves = malloc((4 * COMMP_BLOCK_QUADS + 1) * 32);
  if (leaves == NULL) abort();
  uint64_t full = len / COMMP_BLOCK_BYTES;
  for (uint64_t k = 0; k < full; k++) {
    seg s = { data + k * COMMP_BLOCK_BYTES, COMMP_BLOCK_BYTES };
    uint8_t root[32];
    block_root(impl, &s, 1, leaves, root);
    stack_push(&c, COMMP_BLOCK_LEVEL, root);
  }
  seg s = { data + full * COMMP_BLOCK_BYTES, (size_t)(len - full * COMMP_BLOCK_BYTES) };
  finalize(&c, &s, 1, s.n, leaves);
  *result = c.result;
  free(leaves);
}
