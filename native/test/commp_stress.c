/*
 * Stress test of the threaded CommP core without Node: random chunk sizes, 1-4 threads, compared with the
 * one-shot digest. Build and run under ThreadSanitizer / AddressSanitizer:
 *   cc -O1 -g -fsanitize=thread  -I native/src native/test/commp_stress.c native/src/commp.c native/src/sha256_node.c -lpthread -ldl -o /tmp/cs && /tmp/cs
 *   cc -O1 -g -fsanitize=address -I native/src native/test/commp_stress.c native/src/commp.c native/src/sha256_node.c -lpthread -ldl -o /tmp/cs && /tmp/cs
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commp.h"

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int notified;
} waiter;

static void notify(void *arg) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  w->notified = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(void) {
  const node_impl *impl = node_impl_get(NULL);
  size_t max = 6u << 20;
  uint8_t *data = malloc(max);
  for (size_t i = 0; i < max; i++) data[i] = (uint8_t)next();
  int failures = 0;
  for (int round = 0; round < 24; round++) {
    size_t len = round < 4 ? (size_t)(next() % 1000) : (size_t)(next() % max);
    int threads = 1 + round % 4;
    commp_result want, got;
    commp_oneshot(impl, data, len, &want);
    waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    commp_t *c = commp_new(impl, threads, notify, &w);
    size_t off = 0, tokens_back = 0, tokens_out = 0;
    while (off < len) {
      size_t n = 1 + (size_t)(next() % (next() % 2 ? 700000 : 5000));
      if (n > len - off) n = len - off;
      if (commp_write(c, data + off, n, (void *)(uintptr_t)(off + 1)) != 0) { puts("write failed"); return 1; }
      tokens_out++;
      off += n;
      if (next() % 50 == 0) usleep(1200000); /* let workers go idle and exit */
    }
    if (round == 23) { commp_free(c, NULL, NULL); break; } /* abandon midway */
    commp_finish(c);
    for (;;) {
      pthread_mutex_lock(&w.mu);
      while (!w.notified) pthread_cond_wait(&w.cv, &w.mu);
      w.notified = 0;
      pthread_mutex_unlock(&w.mu);
      void *tokens[64];
      uint64_t consumed;
      int done;
      size_t n;
      do { n = commp_poll(c, tokens, 64, &consumed, &done, &got); tokens_back += n; } while (n == 64);
      if (done) break;
    }
    commp_free(c, NULL, NULL);
    int ok = memcmp(want.root, got.root, 32) == 0 && want.height == got.height && got.payload_size == len &&
             tokens_back == tokens_out;
    printf("len %zu threads %d: %s\n", len, threads, ok ? "ok" : "MISMATCH");
    failures += !ok;
  }
  free(data);
  return failures != 0;
}
