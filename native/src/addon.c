/*
 * packer_native: Node-API bindings (plain C, node_api.h only).
 *
 *   commpCreate(threads, impl, callback) -> handle
 *       callback(hashed: number, done: boolean, result?: {root, height, payloadSize, paddedSize}) runs on the
 *       JS thread whenever more bytes were hashed (hashed = bytes hashed so far; fully hashed chunks are let go)
 *       and once more when the digest is ready.
 *   commpWrite(handle, u8)      bytes are read in place by a worker thread; the array is referenced until released
 *   commpFinish(handle)         no more writes; the result arrives through the callback
 *   commpDestroy(handle)        abandon (also done by GC)
 *   commpOneshot(u8, impl?) -> result     synchronous, on the calling thread (tests)
 *   commpImpls() -> string[]    available node-hash implementations, fastest first
 *   benchNodeHash(impl, nodes) -> seconds taken to hash `nodes` tree nodes
 *   setFileTimes(path, atimeSec: bigint, atimeNsec, mtimeSec: bigint, mtimeNsec)   utimensat, no symlink following
 *   readFileInto(path, dev, ino, size, mtimeNs, into) -> 0 | 1   a small file read whole, checked (see there)
 *   zstdCompressFrame, zstdDecompressFrame, zstdVersion    see zstd.c
 *   writeFiles(paths, data, meta, callback), renameFiles(paths, count, callback)   small files written whole on
 *       libuv's thread pool, a batch a call (see there); lstatFiles(paths, count, stats, callback) the same for a
 *       walk's lstat and readlink
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commp.h"
#include "age.h"
#include "zstd_frames.h"

extern const char *uv_err_name(int err); /* exported by node (libuv); on Unix uv error = -errno */

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      const napi_extended_error_info *info_;                                        \
      napi_get_last_error_info(env, &info_);                                        \
      bool pending_;                                                                \
      napi_is_exception_pending(env, &pending_);                                    \
      if (!pending_)                                                                \
        napi_throw_error(env, NULL, info_ && info_->error_message ? info_->error_message : #call); \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* ---------------------------------------------------------------- CommP hasher */

typedef struct {
  commp_t *c;
  napi_env env;
  napi_threadsafe_function tsfn;
  int refs;            /* the JS handle + the tsfn */
  int tsfn_released;
  int finishing;
  uint64_t written;
} hasher;

static void hasher_unref(hasher *h) {
  if (--h->refs == 0) free(h);
}

static void release_token(void *token, void *arg) {
  napi_env env = arg;
  napi_delete_reference(env, (napi_ref)token);
}

static void hasher_close(napi_env env, hasher *h) {
  if (h->c != NULL) {
    commp_free(h->c, release_token, env);
    h->c = NULL;
  }
  if (!h->tsfn_released) {
    h->tsfn_released = 1;
    napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
  }
}

static void notify_cb(void *arg) {
  hasher *h = arg;
  napi_call_threadsafe_function(h->tsfn, NULL, napi_tsfn_nonblocking);
}

static napi_value make_result(napi_env env, const commp_result *r) {
  napi_value obj, v, ab;
  void *data;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (napi_create_buffer_copy(env, 32, r->root, &data, &ab) != napi_ok) return NULL;
  napi_set_named_property(env, obj, "root", ab);
  napi_create_uint32(env, r->height, &v);
  napi_set_named_property(env, obj, "height", v);
  napi_create_double(env, (double)r->payload_size, &v);
  napi_set_named_property(env, obj, "payloadSize", v);
  napi_create_double(env, (double)r->padded_size, &v);
  napi_set_named_property(env, obj, "paddedSize", v);
  return obj;
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)data;
  hasher *h = context;
  if (env == NULL || h->c == NULL) return;
  void *tokens[256];
  uint64_t consumed;
  int done;
  commp_result result;
  size_t n;
  do {
    n = commp_poll(h->c, tokens, 256, &consumed, &done, &result);
    for (size_t i = 0; i < n; i++) napi_delete_reference(env, (napi_ref)tokens[i]);
  } while (n == 256);
  if (done) {
    hasher_close(env, h);
  } else if (!commp_busy(h->c)) {
    /* Idle (the bytes after the last full block wait for more): do not hold the process open. */
    napi_unref_threadsafe_function(env, h->tsfn);
  }
  napi_value args[3], undef;
  napi_get_undefined(env, &undef);
  napi_create_double(env, (double)consumed, &args[0]);
  napi_get_boolean(env, done, &args[1]);
  args[2] = done ? make_result(env, &result) : undef;
  if (args[2] == NULL) return;
  napi_call_function(env, undef, js_cb, 3, args, NULL);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  hasher *h = data;
  /* The tsfn is gone: released by us, or torn down with the environment at exit (an abandoned hasher), after which
     Node 24 may still run the JS handle's finalizer; releasing the freed tsfn there hung the process. Stop the
     workers now, while their notifications still reach a closing tsfn. */
  h->tsfn_released = 1;
  hasher_close(env, h);
  hasher_unref(h);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  hasher *h = data;
  hasher_close(env, h);
  hasher_unref(h);
}

static hasher *get_hasher(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "expected a CommP hasher handle");
    return NULL;
  }
  return p;
}

static const node_impl *impl_arg(napi_env env, napi_value v, int *ok) {
  napi_valuetype t;
  *ok = 1;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) return node_impl_get(NULL);
  char name[32];
  size_t len;
  if (t != napi_string || napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
    *ok = 0;
    throw_type(env, "impl must be a string");
    return NULL;
  }
  const node_impl *impl = node_impl_get(name);
  if (impl == NULL) {
    *ok = 0;
    napi_throw_error(env, NULL, "requested SHA-256 implementation is not available on this machine");
  }
  return impl;
}

static napi_value commp_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw_type(env, "commpCreate(threads, impl, callback)");
  int32_t threads = 1;
  if (napi_get_value_int32(env, argv[0], &threads) != napi_ok) return throw_type(env, "threads must be a number");
  int ok;
  const node_impl *impl = impl_arg(env, argv[1], &ok);
  if (!ok) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_function) return throw_type(env, "callback must be a function");

  hasher *h = calloc(1, sizeof *h);
  if (h == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  h->env = env;
  napi_value name;
  napi_create_string_utf8(env, "packer:commp", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, h, tsfn_finalize, h, call_js, &h->tsfn) != napi_ok) {
    free(h);
    napi_throw_error(env, NULL, "cannot create the CommP completion callback");
    return NULL;
  }
  h->refs = 2;
  napi_unref_threadsafe_function(env, h->tsfn);
  h->c = commp_new(impl, threads, notify_cb, h);
  if (h->c == NULL) {
    h->tsfn_released = 1;
    napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
    hasher_unref(h);
    napi_throw_error(env, NULL, "cannot start the CommP worker threads");
    return NULL;
  }
  napi_value ext;
  if (napi_create_external(env, h, handle_finalize, NULL, &ext) != napi_ok) {
    hasher_close(env, h);
    hasher_unref(h);
    napi_throw_error(env, NULL, "cannot create the CommP handle");
    return NULL;
  }
  return ext;
}

static napi_value commp_write_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_type(env, "commpWrite(handle, bytes)");
  hasher *h = get_hasher(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->c == NULL || h->finishing) {
    napi_throw_error(env, NULL, "CommP hasher already finished");
    return NULL;
  }
  bool is_ta;
  napi_is_typedarray(env, argv[1], &is_ta);
  if (!is_ta) return throw_type(env, "bytes must be a Uint8Array");
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (type != napi_uint8_array && type != napi_uint8_clamped_array) return throw_type(env, "bytes must be a Uint8Array");
  if (length == 0) return NULL;
  napi_ref ref;
  CHECK(napi_create_reference(env, argv[1], 1, &ref));
  int r = commp_write(h->c, data, length, ref);
  if (r == -1) {
    napi_delete_reference(env, ref);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  h->written += length;
  if (r == -2) {
    napi_throw_error(env, "EAGAIN", "cannot start a CommP worker thread");
    return NULL;
  }
  if (commp_busy(h->c)) napi_ref_threadsafe_function(env, h->tsfn); /* call_js unrefs once idle again */
  return NULL;
}

static napi_value commp_finish_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "commpFinish(handle)");
  hasher *h = get_hasher(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->c == NULL || h->finishing) {
    napi_throw_error(env, NULL, "CommP hasher already finished");
    return NULL;
  }
  if (commp_finish(h->c) != 0) {
    napi_throw_error(env, "EAGAIN", "cannot start a CommP worker thread");
    return NULL;
  }
  h->finishing = 1;
  napi_ref_threadsafe_function(env, h->tsfn);
  return NULL;
}

static napi_value commp_destroy_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "commpDestroy(handle)");
  hasher *h = get_hasher(env, argv[0]);
  if (h == NULL) return NULL;
  hasher_close(env, h);
  return NULL;
}

static napi_value commp_oneshot_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "commpOneshot(bytes, impl?)");
  bool is_ta;
  napi_is_typedarray(env, argv[0], &is_ta);
  if (!is_ta) return throw_type(env, "bytes must be a Uint8Array");
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  int ok = 1;
  const node_impl *impl = argc > 1 ? impl_arg(env, argv[1], &ok) : node_impl_get(NULL);
  if (!ok) return NULL;
  commp_result r;
  commp_oneshot(impl, data, length, &r);
  return make_result(env, &r);
}

static napi_value commp_impls_js(napi_env env, napi_callback_info info) {
  (void)info;
  static const char *names[] = { "sha-ni", "sha-ni-x2", "sha-ni-x1", "openssl", "portable" };
  napi_value arr, s;
  CHECK(napi_create_array(env, &arr));
  uint32_t n = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (node_impl_get(names[i]) == NULL) continue;
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, n++, s);
  }
  return arr;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static napi_value bench_node_hash_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_type(env, "benchNodeHash(impl, nodes)");
  int ok;
  const node_impl *impl = impl_arg(env, argv[0], &ok);
  if (!ok) return NULL;
  double nodes_d;
  CHECK(napi_get_value_double(env, argv[1], &nodes_d));
  size_t batch = 4096; /* 256 KiB in, like one level of a block */
  uint8_t *buf = malloc(batch * 64);
  if (buf == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  for (size_t i = 0; i < batch * 64; i++) buf[i] = (uint8_t)(i * 131 + 7);
  uint64_t nodes = (uint64_t)nodes_d, done = 0;
  double t0 = now_s();
  while (done < nodes) {
    size_t n = nodes - done < batch ? (size_t)(nodes - done) : batch;
    impl->pairs(buf, buf, n); /* reuses its own output, keeps the work honest */
    done += n;
  }
  double t = now_s() - t0;
  free(buf);
  napi_value r;
  napi_create_double(env, t, &r);
  return r;
}

/* ---------------------------------------------------------------- setFileTimes */

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  const char *code = uv_err_name(-err);
  char msg[4200];
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(err), syscall, path);
  napi_value m, c, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_create_int32(env, -err, &v);
  napi_set_named_property(env, e, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "syscall", v);
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "path", v);
  napi_throw(env, e);
  return NULL;
}

static int get_time_arg(napi_env env, napi_value sec_v, napi_value nsec_v, struct timespec *ts) {
  int64_t sec;
  bool lossless;
  int32_t nsec;
  if (napi_get_value_bigint_int64(env, sec_v, &sec, &lossless) != napi_ok || !lossless) {
    throw_type(env, "seconds must be a bigint within 64 bits");
    return 0;
  }
  if (napi_get_value_int32(env, nsec_v, &nsec) != napi_ok || nsec < 0 || nsec > 999999999) {
    throw_type(env, "nanoseconds must be an integer in [0, 999999999]");
    return 0;
  }
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = nsec;
  return 1;
}

/*
 * A path argument: a string (UTF-8) or raw bytes (Buffer/Uint8Array), for file names that are not valid UTF-8.
 * Returns a malloc'd C string, or NULL with a JS exception pending.
 */
static char *path_arg(napi_env env, napi_value v) {
  napi_valuetype pt;
  bool is_ta = false;
  size_t len = 0;
  char *path = NULL;
  napi_typeof(env, v, &pt);
  if (pt != napi_string) napi_is_typedarray(env, v, &is_ta);
  if (pt == napi_string) {
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) { throw_type(env, "bad path"); return NULL; }
    path = malloc(len + 1);
    if (path == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
    napi_get_value_string_utf8(env, v, path, len + 1, &len);
  } else if (is_ta) {
    napi_typedarray_type type;
    void *data;
    if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok) { throw_type(env, "bad path"); return NULL; }
    if (type != napi_uint8_array) { throw_type(env, "path must be a string or a Uint8Array"); return NULL; }
    path = malloc(len + 1);
    if (path == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
    memcpy(path, data, len);
    path[len] = 0;
  } else {
    throw_type(env, "path must be a string or a Uint8Array");
    return NULL;
  }
  if (strlen(path) != len) {
    free(path);
    throw_type(env, "path must not contain NUL bytes");
    return NULL;
  }
  return path;
}

static napi_value set_file_times_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return throw_type(env, "setFileTimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
  char *path = path_arg(env, argv[0]);
  if (path == NULL) return NULL;
  struct timespec ts[2];
  if (!get_time_arg(env, argv[1], argv[2], &ts[0]) || !get_time_arg(env, argv[3], argv[4], &ts[1])) {
    free(path);
    return NULL;
  }
  napi_value r = NULL;
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) r = throw_errno(env, errno, "utimensat", path);
  free(path);
  return r;
}

/*
 * readFileInto(path, dev, ino, size, mtimeNs, into) -> 0, or 1 when anything differs from what is expected or fails.
 * A whole small file for a leaf worker, in one call where node:fs made five (open, fstat, read, fstat, close) and two
 * BigIntStats: open (O_NOFOLLOW), the file must be the regular file of that device, inode, size and mtime (BigInts,
 * signed as node's bigint stats), read whole into `into` (exactly size bytes), unchanged after the read. On 1 the
 * caller reads it again through node:fs, whose outcome names the problem.
 */
static bool bytes_arg(napi_env env, napi_value v, const uint8_t **bytes, size_t *length, const char *what);

static bool same_file(const struct stat *st, const int64_t expect[4]) {
  __int128 ns = (__int128)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  return S_ISREG(st->st_mode) && (int64_t)st->st_dev == expect[0] && (int64_t)st->st_ino == expect[1] &&
    (int64_t)st->st_size == expect[2] && ns == expect[3];
}

static napi_value read_file_into_js(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t expect[4];
  bool lossless;
  const uint8_t *into;
  size_t into_length;
  if (argc < 6) return throw_type(env, "readFileInto(path, dev, ino, size, mtimeNs, into)");
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_bigint_int64(env, argv[1 + i], &expect[i], &lossless) != napi_ok) return throw_type(env, "readFileInto: dev, ino, size and mtimeNs must be BigInts");
  }
  if (!bytes_arg(env, argv[5], &into, &into_length, "readFileInto: into must be a Uint8Array")) return NULL;
  if (expect[2] < 0 || (uint64_t)expect[2] != into_length) return throw_type(env, "readFileInto: into must hold exactly size bytes");
  char *path = path_arg(env, argv[0]);
  if (path == NULL) return NULL;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  free(path);
  int failed = 1;
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && same_file(&st, expect)) {
    size_t done = 0;
    while (done < into_length) {
      ssize_t n = pread(fd, (uint8_t *)into + done, into_length - done, (off_t)done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += (size_t)n;
    }
    failed = !(done == into_length && fstat(fd, &st) == 0 && same_file(&st, expect));
  }
  if (fd >= 0) close(fd);
  napi_value r;
  napi_create_int32(env, failed, &r);
  return r;
}

static napi_value js_bool(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

/*
 * adviseWillNeed(paths): asks the kernel to start reading whole files into the page cache (posix_fadvise WILLNEED),
 * on a thread of libuv's pool: returns at once, the calling thread pays no system call. Pack calls it for the small
 * files it hands its workers ahead of their turn: their synchronous reads then find the data cached instead of
 * waiting for the disk one file at a time. Fire and forget: a file that cannot be opened is skipped.
 */
typedef struct { napi_async_work work; size_t n; char *paths; } advice;

static void advise_execute(napi_env env, void *data) {
  advice *a = data;
  char *p = a->paths;
  for (size_t i = 0; i < a->n; i++) {
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
      close(fd);
    }
    p += strlen(p) + 1;
  }
}

static void advise_complete(napi_env env, napi_status status, void *data) {
  advice *a = data;
  napi_delete_async_work(env, a->work);
  free(a->paths);
  free(a);
}

static napi_value advise_will_need_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  uint32_t n = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_array_length(env, argv[0], &n) != napi_ok) return throw_type(env, "adviseWillNeed(paths)");
  size_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    void *d;
    size_t len;
    napi_get_element(env, argv[0], i, &v);
    if (napi_get_buffer_info(env, v, &d, &len) != napi_ok) return throw_type(env, "adviseWillNeed: paths must be Buffers");
    total += len + 1;
  }
  advice *a = calloc(1, sizeof *a);
  if (a == NULL || (a->paths = malloc(total + 1)) == NULL) { free(a); return NULL; }
  char *p = a->paths;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    void *d;
    size_t len;
    napi_get_element(env, argv[0], i, &v);
    napi_get_buffer_info(env, v, &d, &len);
    if (memchr(d, 0, len) != NULL) continue; /* a path with NUL cannot name a file */
    memcpy(p, d, len);
    p[len] = 0;
    p += len + 1;
    a->n++;
  }
  napi_create_string_utf8(env, "packer:fadvise", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, advise_execute, advise_complete, a, &a->work) != napi_ok ||
      napi_queue_async_work(env, a->work) != napi_ok) {
    free(a->paths);
    free(a);
  }
  return NULL;
}

/* ---------------------------------------------------------------- writeFiles, renameFiles, lstatFiles */

/*
 * Small files written whole on libuv's thread pool, many to one call: for a tree of small files, the per-file system
 * calls (open, write, fchown, fchmod, futimens, close, rename), each its own round trip to the pool through
 * fs.promises, cost more than the data (unpack of 46,000 small files: most of the main thread). Two steps, so that
 * the caller renames only files whose bytes are all written (and a kill between them leaves only temporaries).
 * Arguments are packed (a few N-API calls a batch, not a few a file):
 *
 *   writeFiles(paths, data, meta, callback(failures))
 *       paths: the files' names, each followed by a NUL byte, in one Uint8Array; data: an array of Uint8Arrays;
 *       meta: a Float64Array of [mode, uid, gid, mtimeSec, mtimeNsec] per file (uid, gid -1: leave the owner).
 *       Each: open(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, 0600), write all, fchown, fchmod, futimens (atime = mtime),
 *       close; a file that fails is unlinked.
 *   renameFiles(paths, count, callback(failures))   paths: from, NUL, to, NUL, … for count pairs: rename(2) of each
 *   lstatFiles(paths, count, stats, callback(failures, targets))   lstat(2) of each name (a walk's batch of entries:
 *       one promise and one BigIntStats a file cost more of the main thread than the call): stats, a BigInt64Array,
 *       gets [dev, ino, size, mtimeNs, mode, uid, gid] per file, signed as node's own bigint stats; a symlink's target
 *       (readlink) is targets[index], a Buffer. An mtime beyond int64 nanoseconds fails as EOVERFLOW.
 *   failures: [[index, code, syscall], …] of the files that failed (code: the errno's name), usually empty
 */
typedef struct {
  const char *path;
  const char *to;
  const uint8_t *data;
  size_t length;
  int mode;
  int64_t uid, gid;
  struct timespec mtime;
  char *target;      /* lstatFiles: a symlink's target (malloc'd), target_length bytes */
  size_t target_length;
  int err;
  const char *syscall;
} file_op;

typedef enum { FILES_WRITE, FILES_RENAME, FILES_LSTAT } file_batch_kind;

typedef struct {
  napi_async_work work;
  napi_ref callback;
  napi_ref data_ref; /* the array of data buffers (the stats array), kept alive while they are written */
  char *paths;       /* a copy of the NUL-separated names */
  file_op *ops;
  int64_t *stats;    /* lstatFiles: 7 per file */
  uint32_t count;
  file_batch_kind kind;
} file_batch;

static void file_fail(file_op *op, const char *syscall) {
  if (op->err == 0) {
    op->err = errno;
    op->syscall = syscall;
  }
}

static void write_whole_file(file_op *op) {
  int fd = open(op->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) { file_fail(op, "open"); return; }
  for (size_t done = 0; done < op->length;) {
    ssize_t n = write(fd, op->data + done, op->length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { file_fail(op, "write"); break; }
    done += (size_t)n;
  }
  /* chown before chmod: a chown clears the setuid and setgid bits. */
  if (op->err == 0 && op->uid >= 0 && fchown(fd, (uid_t)op->uid, (gid_t)op->gid) != 0) file_fail(op, "fchown");
  if (op->err == 0 && fchmod(fd, (mode_t)op->mode) != 0) file_fail(op, "fchmod");
  struct timespec ts[2] = { op->mtime, op->mtime };
  if (op->err == 0 && futimens(fd, ts) != 0) file_fail(op, "futimens");
  if (close(fd) != 0) file_fail(op, "close");
  if (op->err != 0) unlink(op->path);
}

static void lstat_file(file_op *op, int64_t out[7]) {
  struct stat st;
  if (lstat(op->path, &st) != 0) { file_fail(op, "lstat"); return; }
  __int128 ns = (__int128)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  if (ns > INT64_MAX || ns < INT64_MIN) { op->err = EOVERFLOW; op->syscall = "lstat"; return; }
  out[0] = (int64_t)st.st_dev;
  out[1] = (int64_t)st.st_ino;
  out[2] = (int64_t)st.st_size;
  out[3] = (int64_t)ns;
  out[4] = (int64_t)st.st_mode;
  out[5] = (int64_t)st.st_uid;
  out[6] = (int64_t)st.st_gid;
  if (!S_ISLNK(st.st_mode)) return;
  /* st_size is the target's length on most file systems, 0 on some: grow until the target fits with room to spare. */
  for (size_t size = st.st_size > 0 ? (size_t)st.st_size + 1 : 256;; size *= 2) {
    char *target = malloc(size);
    if (target == NULL) { op->err = ENOMEM; op->syscall = "readlink"; return; }
    ssize_t n = readlink(op->path, target, size);
    if (n < 0) { free(target); file_fail(op, "readlink"); return; }
    if ((size_t)n < size) { op->target = target; op->target_length = (size_t)n; return; }
    free(target);
  }
}

static void file_batch_execute(napi_env env, void *data) {
  file_batch *b = data;
  for (uint32_t i = 0; i < b->count; i++) {
    file_op *op = &b->ops[i];
    if (b->kind == FILES_WRITE) write_whole_file(op);
    else if (b->kind == FILES_LSTAT) lstat_file(op, b->stats + (size_t)i * 7);
    else if (rename(op->path, op->to) != 0) file_fail(op, "rename");
  }
}

static void file_batch_free(napi_env env, file_batch *b) {
  for (uint32_t i = 0; b->ops != NULL && i < b->count; i++) free(b->ops[i].target);
  if (b->data_ref != NULL) napi_delete_reference(env, b->data_ref);
  if (b->callback != NULL) napi_delete_reference(env, b->callback);
  if (b->work != NULL) napi_delete_async_work(env, b->work);
  free(b->paths);
  free(b->ops);
  free(b);
}

static void file_batch_complete(napi_env env, napi_status status, void *data) {
  file_batch *b = data;
  napi_value failures, callback, global, v, item;
  napi_create_array(env, &failures);
  uint32_t n = 0;
  for (uint32_t i = 0; i < b->count; i++) {
    file_op *op = &b->ops[i];
    if (op->err == 0) continue;
    napi_create_array_with_length(env, 3, &item);
    napi_create_uint32(env, i, &v);
    napi_set_element(env, item, 0, v);
    napi_create_string_utf8(env, uv_err_name(-op->err), NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, item, 1, v);
    napi_create_string_utf8(env, op->syscall, NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, item, 2, v);
    napi_set_element(env, failures, n++, item);
  }
  napi_value args[2] = { failures, NULL };
  size_t argc = 1;
  if (b->kind == FILES_LSTAT) {
    napi_create_array_with_length(env, b->count, &args[1]);
    for (uint32_t i = 0; i < b->count; i++) {
      if (b->ops[i].target == NULL) continue;
      napi_create_buffer_copy(env, b->ops[i].target_length, b->ops[i].target, NULL, &v);
      napi_set_element(env, args[1], i, v);
    }
    argc = 2;
  }
  napi_get_reference_value(env, b->callback, &callback);
  napi_get_global(env, &global);
  file_batch_free(env, b);
  napi_call_function(env, global, callback, argc, args, NULL);
}

/* A Uint8Array argument's bytes (NULL when it is empty); false with a JS exception pending. */
static bool bytes_arg(napi_env env, napi_value v, const uint8_t **bytes, size_t *length, const char *what) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *data = NULL;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, v, &type, length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    throw_type(env, what);
    return false;
  }
  *bytes = data;
  return true;
}

/* Splits a copy of NUL-terminated names into `count` (x2 for pairs) names; false with a JS exception pending. */
static bool split_paths(napi_env env, napi_value v, file_batch *b, uint32_t per_op) {
  size_t length;
  const uint8_t *bytes;
  if (!bytes_arg(env, v, &bytes, &length, "paths must be a Uint8Array of NUL-terminated names")) return false;
  b->paths = malloc(length + 1);
  if (b->paths == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return false; }
  if (length > 0) memcpy(b->paths, bytes, length);
  b->paths[length] = 0;
  char *at = b->paths, *end = b->paths + length;
  for (uint32_t i = 0; i < b->count * per_op; i++) {
    char *nul = memchr(at, 0, (size_t)(end - at));
    if (nul == NULL || nul == at) { throw_type(env, "paths: fewer names than files, or an empty one"); return false; }
    if (per_op == 2 && i % 2 == 1) b->ops[i / 2].to = at;
    else b->ops[i / per_op].path = at;
    at = nul + 1;
  }
  if (at != end) { throw_type(env, "paths: more names than files"); return false; }
  return true;
}

static napi_value file_batch_queue(napi_env env, file_batch *b, napi_value callback) {
  napi_value name;
  static const char *names[] = { "packer:writeFiles", "packer:renameFiles", "packer:lstatFiles" };
  napi_create_string_utf8(env, names[b->kind], NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, callback, 1, &b->callback) != napi_ok ||
      napi_create_async_work(env, NULL, name, file_batch_execute, file_batch_complete, b, &b->work) != napi_ok ||
      napi_queue_async_work(env, b->work) != napi_ok) {
    file_batch_free(env, b);
    napi_throw_error(env, NULL, "cannot queue the file operations");
  }
  return NULL;
}

static file_batch *file_batch_new(napi_env env, uint32_t count, file_batch_kind kind) {
  file_batch *b = calloc(1, sizeof *b);
  if (b != NULL && count > 0 && (b->ops = calloc(count, sizeof *b->ops)) == NULL) { free(b); b = NULL; }
  if (b == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  b->count = count;
  b->kind = kind;
  return b;
}

static napi_value write_files_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_array = false, is_ta = false;
  napi_valuetype cb_type = napi_undefined;
  if (argc == 4) {
    napi_is_array(env, argv[1], &is_array);
    napi_is_typedarray(env, argv[2], &is_ta);
    napi_typeof(env, argv[3], &cb_type);
  }
  napi_typedarray_type type;
  size_t meta_length;
  void *meta_data;
  if (!is_array || !is_ta || cb_type != napi_function ||
      napi_get_typedarray_info(env, argv[2], &type, &meta_length, &meta_data, NULL, NULL) != napi_ok || type != napi_float64_array) {
    return throw_type(env, "writeFiles(paths, data, meta: Float64Array, callback)");
  }
  uint32_t count;
  CHECK(napi_get_array_length(env, argv[1], &count));
  if (meta_length != (size_t)count * 5) return throw_type(env, "meta must hold 5 numbers a file");
  file_batch *b = file_batch_new(env, count, FILES_WRITE);
  if (b == NULL) return NULL;
  const double *meta = meta_data;
  for (uint32_t i = 0; i < count; i++) {
    file_op *op = &b->ops[i];
    napi_value item;
    if (napi_get_element(env, argv[1], i, &item) != napi_ok || !bytes_arg(env, item, &op->data, &op->length, "data must be Uint8Arrays")) {
      file_batch_free(env, b);
      return NULL;
    }
    const double *m = meta + (size_t)i * 5;
    if (!(m[0] >= 0 && m[0] <= 07777) || !(m[4] >= 0 && m[4] <= 999999999)) {
      file_batch_free(env, b);
      return throw_type(env, "meta: a mode or nanoseconds out of range");
    }
    op->mode = (int)m[0];
    op->uid = (int64_t)m[1];
    op->gid = (int64_t)m[2];
    op->mtime.tv_sec = (time_t)m[3];
    op->mtime.tv_nsec = (long)m[4];
  }
  if (!split_paths(env, argv[0], b, 1) || napi_create_reference(env, argv[1], 1, &b->data_ref) != napi_ok) {
    file_batch_free(env, b);
    return NULL;
  }
  return file_batch_queue(env, b, argv[3]);
}

static napi_value rename_files_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype count_type = napi_undefined, cb_type = napi_undefined;
  if (argc == 3) {
    napi_typeof(env, argv[1], &count_type);
    napi_typeof(env, argv[2], &cb_type);
  }
  uint32_t count;
  if (count_type != napi_number || cb_type != napi_function || napi_get_value_uint32(env, argv[1], &count) != napi_ok) {
    return throw_type(env, "renameFiles(paths, count, callback)");
  }
  file_batch *b = file_batch_new(env, count, FILES_RENAME);
  if (b == NULL) return NULL;
  if (!split_paths(env, argv[0], b, 2)) {
    file_batch_free(env, b);
    return NULL;
  }
  return file_batch_queue(env, b, argv[2]);
}

static napi_value lstat_files_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype count_type = napi_undefined, cb_type = napi_undefined;
  bool is_ta = false;
  if (argc == 4) {
    napi_typeof(env, argv[1], &count_type);
    napi_is_typedarray(env, argv[2], &is_ta);
    napi_typeof(env, argv[3], &cb_type);
  }
  uint32_t count;
  napi_typedarray_type type;
  size_t stats_length;
  void *stats;
  if (count_type != napi_number || !is_ta || cb_type != napi_function || napi_get_value_uint32(env, argv[1], &count) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &type, &stats_length, &stats, NULL, NULL) != napi_ok || type != napi_bigint64_array) {
    return throw_type(env, "lstatFiles(paths, count, stats: BigInt64Array, callback)");
  }
  if (stats_length < (size_t)count * 7) return throw_type(env, "stats must hold 7 numbers a file");
  file_batch *b = file_batch_new(env, count, FILES_LSTAT);
  if (b == NULL) return NULL;
  b->stats = stats;
  if (!split_paths(env, argv[0], b, 1) || napi_create_reference(env, argv[2], 1, &b->data_ref) != napi_ok) {
    file_batch_free(env, b);
    return NULL;
  }
  return file_batch_queue(env, b, argv[3]);
}

/* ---------------------------------------------------------------- malloc */

/*
 * trimMalloc(): returns the free pages of every malloc arena to the system (glibc's malloc_trim(0)). Threads that
 * churned through buffers (pack's leaf workers) leave arenas of ~50 MB mostly free once they stop; pack calls this
 * after its first stage. Returns whether memory was released.
 */
static napi_value trim_malloc_js(napi_env env, napi_callback_info info) {
  (void)info;
  bool released = false;
#ifdef __GLIBC__
  released = malloc_trim(0) == 1;
#endif
  return js_bool(env, released);
}

/*
 * hugePagesAt(bytes, length): the offset in `bytes` of its first 2 MiB boundary, with the whole 2 MiB pages of
 * [offset, offset + length) advised MADV_HUGEPAGE; -1 when bytes cannot hold `length` bytes from there. The fetching
 * threads put received blocks there: on these VMs each first touch of a 4 KiB page of fresh memory cost ~10 us
 * (~0.8 CPU-s per 256 MiB received), of a 2 MiB page ~0.2 ms. Advice only: where the kernel gives no huge pages
 * (transparent_hugepage "never"), the memory works as before.
 */
static napi_value huge_pages_at_js(napi_env env, napi_callback_info info) {
  size_t argc = 2, n = 0;
  napi_value argv[2], result;
  const uint8_t *bytes = NULL;
  double length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_double(env, argv[1], &length) != napi_ok || !(length >= 0)) return throw_type(env, "hugePagesAt: bytes, length");
  if (!bytes_arg(env, argv[0], &bytes, &n, "hugePagesAt: bytes must be a Uint8Array")) return NULL;
  const uintptr_t huge = 2u << 20, at = (uintptr_t)bytes, aligned = (at + huge - 1) & ~(huge - 1);
  double offset = (double)(aligned - at);
  if (offset + length > (double)n) offset = -1;
  else if ((size_t)length >= huge) madvise((void *)aligned, (size_t)length & ~(huge - 1), MADV_HUGEPAGE);
  napi_create_double(env, offset, &result);
  return result;
}

/*
 * trimMallocInBackground(): malloc_trim(0) on a thread of libuv's pool, one at a time; returns at once (false when one
 * is still under way). The mount trims once a second: on its main thread a trim took 10-50 ms (it walks every
 * arena's free chunks), during which no FUSE request was answered.
 */
typedef struct { napi_async_work work; } trim_job;
static atomic_bool trimming;

static void trim_execute(napi_env env, void *data) {
  (void)env;
  (void)data;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void trim_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  trim_job *t = data;
  napi_delete_async_work(env, t->work);
  free(t);
  atomic_store(&trimming, false);
}

static napi_value trim_malloc_in_background_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value name;
  if (atomic_exchange(&trimming, true)) return js_bool(env, false);
  trim_job *t = calloc(1, sizeof *t);
  napi_create_string_utf8(env, "packer:malloc_trim", NAPI_AUTO_LENGTH, &name);
  if (t == NULL || napi_create_async_work(env, NULL, name, trim_execute, trim_complete, t, &t->work) != napi_ok ||
      napi_queue_async_work(env, t->work) != napi_ok) {
    free(t);
    atomic_store(&trimming, false);
    return js_bool(env, false);
  }
  return js_bool(env, true);
}

/* ---------------------------------------------------------------- module */

/* ------------------------------------------------------------------------------------------------ age (age.c) */

static void recipients_finalize (napi_env env, void *data, void *hint) { age_recipients_free(data); }

/*
 * ageRecipients([{ x25519: Buffer(32) } | { spki: Buffer, tag: string }, …]) → a handle, or null when one of them
 * cannot be used here (then the caller keeps to JavaScript).
 */
static napi_value age_recipients_js (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], nul;
  uint32_t n = 0;
  napi_get_null(env, &nul);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_array_length(env, argv[0], &n) != napi_ok) return throw_type(env, "ageRecipients: an array");
  age_recipients *rs = age_recipients_new(n);
  if (rs == NULL) return nul;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item, v;
    bool has = false;
    void *data = NULL;
    size_t len = 0;
    int rc = -1;
    napi_get_element(env, argv[0], i, &item);
    if (napi_has_named_property(env, item, "x25519", &has) == napi_ok && has) {
      napi_get_named_property(env, item, "x25519", &v);
      if (napi_get_buffer_info(env, v, &data, &len) == napi_ok && len == 32) rc = age_recipients_add_x25519(rs, data);
    } else if (napi_has_named_property(env, item, "spki", &has) == napi_ok && has) {
      char tag[16];
      size_t tag_len = 0;
      napi_value t;
      napi_get_named_property(env, item, "spki", &v);
      napi_get_named_property(env, item, "tag", &t);
      if (napi_get_buffer_info(env, v, &data, &len) == napi_ok && napi_get_value_string_utf8(env, t, tag, sizeof tag, &tag_len) == napi_ok && tag_len < sizeof tag - 1) {
        rc = age_recipients_add_ssh_rsa(rs, data, len, tag);
      }
    }
    if (rc != 0) { age_recipients_free(rs); return nul; }
  }
  napi_value ext;
  if (napi_create_external(env, rs, recipients_finalize, NULL, &ext) != napi_ok) { age_recipients_free(rs); return nul; }
  return ext;
}

/*
 * ageSealFile(recipients, plain) → one Buffer: file key (16) ‖ SHA-256 of the age file (32) ‖ header length (u32 LE) ‖
 * the age file. Throws on a failure of the cryptography (never expected).
 */
static napi_value age_seal_file_js (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  age_recipients *rs = NULL;
  void *plain = NULL, *mem = NULL;
  size_t n = 0;
  bool is_typed = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_external(env, argv[0], (void **)&rs) != napi_ok) return throw_type(env, "ageSealFile: recipients, bytes");
  napi_is_typedarray(env, argv[1], &is_typed);
  if (is_typed) {
    napi_typedarray_type t;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, argv[1], &t, &n, &plain, &ab, &off);
    if (t != napi_uint8_array) return throw_type(env, "ageSealFile: bytes must be a Uint8Array");
  } else if (napi_get_buffer_info(env, argv[1], &plain, &n) != napi_ok) {
    return throw_type(env, "ageSealFile: bytes must be a Uint8Array");
  }
  size_t bound = 52 + age_file_size(age_header_bound(rs), n);
  unsigned char *scratch = malloc(bound);
  if (scratch == NULL) return throw_type(env, "ageSealFile: out of memory");
  long header = age_seal_file(rs, plain, n, scratch + 52, bound - 52, scratch, scratch + 16);
  if (header < 0) { free(scratch); napi_throw_error(env, NULL, "ageSealFile: the cryptography failed"); return NULL; }
  size_t total = 52 + age_file_size((size_t)header, n);
  scratch[48] = header & 0xff; scratch[49] = (header >> 8) & 0xff; scratch[50] = (header >> 16) & 0xff; scratch[51] = (header >> 24) & 0xff;
  if (napi_create_buffer_copy(env, total, scratch, &mem, &out) != napi_ok) { free(scratch); return throw_type(env, "ageSealFile: out of memory"); }
  memset(scratch, 0, 16);
  free(scratch);
  return out;
}

/* ageOpenFile(fileKey, file) → the plaintext of a whole age file, or null when it does not open (the caller's JavaScript path says why). */
static napi_value age_open_file_js (napi_env env, napi_callback_info info) {
  size_t argc = 2, key_len = 0, n = 0;
  napi_value argv[2], out, nul;
  const uint8_t *key = NULL, *file = NULL;
  void *mem = NULL;
  napi_get_null(env, &nul);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return throw_type(env, "ageOpenFile: file key, bytes");
  if (!bytes_arg(env, argv[0], &key, &key_len, "ageOpenFile: the file key must be a Uint8Array") ||
      !bytes_arg(env, argv[1], &file, &n, "ageOpenFile: the file must be a Uint8Array")) return NULL;
  if (key_len != 16) return throw_type(env, "ageOpenFile: a file key has 16 bytes");
  if (n == 0) return nul;
  unsigned char *plain = malloc(n);
  if (plain == NULL) return throw_type(env, "ageOpenFile: out of memory");
  long len = age_open_file(key, file, n, plain);
  napi_status st = len < 0 ? napi_ok : napi_create_buffer_copy(env, (size_t)len, plain, &mem, &out);
  free(plain);
  if (st != napi_ok) return throw_type(env, "ageOpenFile: out of memory");
  return len < 0 ? nul : out;
}

/*
 * The arguments ageOpenChunks and ageSealChunks share: (payloadKey, first, count, lastIndex, lastPlain, in, out), the
 * buffers checked to hold the chunks (sealed: 16 bytes more each). False with a JS exception pending.
 */
typedef struct { const uint8_t *key, *in; uint8_t *out; size_t first, count, last_index, last_plain; } chunk_args;

static bool chunk_args_of (napi_env env, napi_callback_info info, const char *name, bool sealing, chunk_args *a) {
  size_t argc = 7, key_len = 0, in_len = 0, out_len = 0;
  napi_value argv[7];
  double nums[4];
  char what[96];
  const uint8_t *out = NULL;
  snprintf(what, sizeof what, "%s: key, first, count, lastIndex, lastPlain, in, out", name);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7) { throw_type(env, what); return false; }
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_double(env, argv[1 + i], &nums[i]) != napi_ok || !(nums[i] >= 0 && nums[i] <= 9007199254740991.0) || nums[i] != (double)(size_t)nums[i]) {
      snprintf(what, sizeof what, "%s: chunk indexes and lengths are whole numbers", name);
      throw_type(env, what);
      return false;
    }
  }
  snprintf(what, sizeof what, "%s: the key and both buffers must be Uint8Arrays", name);
  if (!bytes_arg(env, argv[0], &a->key, &key_len, what) || !bytes_arg(env, argv[5], &a->in, &in_len, what) ||
      !bytes_arg(env, argv[6], &out, &out_len, what)) return false;
  a->out = (uint8_t *)out;
  a->first = (size_t)nums[0]; a->count = (size_t)nums[1]; a->last_index = (size_t)nums[2]; a->last_plain = (size_t)nums[3];
  const char *fault = NULL;
  if (key_len != 32) fault = "a payload key has 32 bytes";
  else if (a->last_plain > 65536 || (a->count > 0 && a->first + a->count - 1 > a->last_index)) fault = "the chunks run past the file's last one";
  else {
    /* the bytes the chunks take, open and sealed: the last one may be short */
    size_t plain = a->count == 0 ? 0 : (a->count - 1) * 65536 + (a->first + a->count - 1 == a->last_index ? a->last_plain : 65536);
    size_t sealed = plain + a->count * 16;
    if (in_len < (sealing ? plain : sealed) || out_len < (sealing ? sealed : plain)) fault = "the buffers are too short for the chunks";
  }
  if (fault != NULL) {
    snprintf(what, sizeof what, "%s: %s", name, fault);
    throw_type(env, what);
    return false;
  }
  return true;
}

/* ageOpenChunks(payloadKey, first, count, lastIndex, lastPlain, sealed, out): chunks opened before one failed. */
static napi_value age_open_chunks_js (napi_env env, napi_callback_info info) {
  chunk_args a;
  napi_value result;
  if (!chunk_args_of(env, info, "ageOpenChunks", false, &a)) return NULL;
  long opened = age_open_chunks(a.key, a.first, a.count, a.last_index, a.last_plain, a.in, a.out);
  if (opened < 0) return throw_type(env, "ageOpenChunks: OpenSSL's ChaCha20-Poly1305 is not available");
  napi_create_double(env, (double)opened, &result);
  return result;
}

/* ageSealChunks(payloadKey, first, count, lastIndex, lastPlain, plain, out): seals the chunks into out. */
static napi_value age_seal_chunks_js (napi_env env, napi_callback_info info) {
  chunk_args a;
  if (!chunk_args_of(env, info, "ageSealChunks", true, &a)) return NULL;
  if (age_seal_chunks(a.key, a.first, a.count, a.last_index, a.last_plain, a.in, a.out) != 0) return throw_type(env, "ageSealChunks: OpenSSL's ChaCha20-Poly1305 is not available");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "commpCreate", NULL, commp_create, NULL, NULL, NULL, napi_enumerable, NULL },
    { "commpWrite", NULL, commp_write_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "commpFinish", NULL, commp_finish_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "commpDestroy", NULL, commp_destroy_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "commpOneshot", NULL, commp_oneshot_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "commpImpls", NULL, commp_impls_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "benchNodeHash", NULL, bench_node_hash_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setFileTimes", NULL, set_file_times_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "readFileInto", NULL, read_file_into_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "trimMalloc", NULL, trim_malloc_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "trimMallocInBackground", NULL, trim_malloc_in_background_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "hugePagesAt", NULL, huge_pages_at_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "adviseWillNeed", NULL, advise_will_need_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "writeFiles", NULL, write_files_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "renameFiles", NULL, rename_files_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "lstatFiles", NULL, lstat_files_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ageRecipients", NULL, age_recipients_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ageSealFile", NULL, age_seal_file_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ageOpenFile", NULL, age_open_file_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ageOpenChunks", NULL, age_open_chunks_js, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ageSealChunks", NULL, age_seal_chunks_js, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  if (zstd_define(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
