/*
 * zstd frames for packer's seekable streams (src/compress/zstd-seekable.ts), against the system's libzstd (stable
 * API only). Synchronous, on the calling thread: pack and the readers call them from their worker threads.
 *
 *   zstdCompressFrame(src, level, dst) -> bytes written to dst
 *       one independent frame with its content size and its XXH64 checksum (ZSTD_c_checksumFlag: the frame's last
 *       4 bytes are the low 32 bits of XXH64, which is also the seek table's per-frame checksum);
 *       dst must hold ZSTD_compressBound(src.length) bytes.
 *   zstdDecompressFrame(src, dst) -> bytes written to dst
 *       src must be exactly one zstd frame whose content size is dst.length; libzstd checks the frame's checksum.
 *   zstdVersion() -> "1.5.4"   the libzstd in use (Node >= 22 exports its bundled zstd's symbols, which then
 *                              take precedence over libzstd.so.1 for the whole addon; see native/README.md)
 *
 * Each environment (the main thread, every worker) gets its own compression and decompression context, made on
 * first use and freed with the environment: no allocation per frame once the context has grown to the frame size.
 */
#include "zstd_frames.h"

#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

typedef struct {
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
} zstd_contexts;

static void free_contexts(void *arg) {
  zstd_contexts *z = arg;
  ZSTD_freeCCtx(z->cctx);
  ZSTD_freeDCtx(z->dctx);
  free(z);
}

/* A Uint8Array (or Buffer) argument, in place. Returns 0 with a TypeError pending when it is not one. */
static int bytes_arg(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, (void **)data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static napi_value throw_zstd(napi_env env, const char *what, size_t code) {
  char msg[160];
  snprintf(msg, sizeof msg, "zstd %s: %s", what, ZSTD_getErrorName(code));
  napi_throw_error(env, "ZSTD", msg);
  return NULL;
}

static napi_value throw_plain(napi_env env, const char *msg) {
  napi_throw_error(env, "ZSTD", msg);
  return NULL;
}

static napi_value size_value(napi_env env, size_t n) {
  napi_value r;
  napi_create_double(env, (double)n, &r);
  return r;
}

static napi_value compress_frame_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  zstd_contexts *z;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&z) != napi_ok || argc < 3) {
    napi_throw_type_error(env, NULL, "zstdCompressFrame(src, level, dst)");
    return NULL;
  }
  uint8_t *src, *dst;
  size_t src_len, dst_len;
  int32_t level;
  if (!bytes_arg(env, argv[0], "zstdCompressFrame: src must be a Uint8Array", &src, &src_len)) return NULL;
  if (napi_get_value_int32(env, argv[1], &level) != napi_ok || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    napi_throw_range_error(env, NULL, "zstdCompressFrame: level must be an integer zstd level");
    return NULL;
  }
  if (!bytes_arg(env, argv[2], "zstdCompressFrame: dst must be a Uint8Array", &dst, &dst_len)) return NULL;
  if (dst_len < ZSTD_compressBound(src_len)) {
    napi_throw_range_error(env, NULL, "zstdCompressFrame: dst is smaller than ZSTD_compressBound(src.length)");
    return NULL;
  }
  if (z->cctx == NULL && (z->cctx = ZSTD_createCCtx()) == NULL) return throw_plain(env, "zstd: out of memory");
  size_t r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
  if (!ZSTD_isError(r)) r = ZSTD_compress2(z->cctx, dst, dst_len, src, src_len);
  if (ZSTD_isError(r)) {
    ZSTD_CCtx_reset(z->cctx, ZSTD_reset_session_and_parameters);
    return throw_zstd(env, "compression", r);
  }
  return size_value(env, r);
}

static napi_value decompress_frame_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  zstd_contexts *z;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&z) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "zstdDecompressFrame(src, dst)");
    return NULL;
  }
  uint8_t *src, *dst;
  size_t src_len, dst_len;
  if (!bytes_arg(env, argv[0], "zstdDecompressFrame: src must be a Uint8Array", &src, &src_len)) return NULL;
  if (!bytes_arg(env, argv[1], "zstdDecompressFrame: dst must be a Uint8Array", &dst, &dst_len)) return NULL;
  size_t frame_len = ZSTD_findFrameCompressedSize(src, src_len);
  if (ZSTD_isError(frame_len)) return throw_zstd(env, "frame", frame_len);
  if (frame_len != src_len) return throw_plain(env, "zstd frame: the bytes hold more than one frame");
  unsigned long long content = ZSTD_getFrameContentSize(src, src_len);
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) {
    return throw_plain(env, "zstd frame: no content size in the frame header");
  }
  if (content != dst_len) return throw_plain(env, "zstd frame: its content size is not the expected size");
  if (z->dctx == NULL && (z->dctx = ZSTD_createDCtx()) == NULL) return throw_plain(env, "zstd: out of memory");
  size_t r = ZSTD_decompressDCtx(z->dctx, dst, dst_len, src, src_len);
  if (ZSTD_isError(r)) return throw_zstd(env, "frame", r);
  if (r != dst_len) return throw_plain(env, "zstd frame: it decompressed to fewer bytes than its content size");
  return size_value(env, r);
}

static napi_value version_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, ZSTD_versionString(), NAPI_AUTO_LENGTH, &r);
  return r;
}

napi_status zstd_define(napi_env env, napi_value exports) {
  zstd_contexts *z = calloc(1, sizeof *z);
  if (z == NULL) return napi_generic_failure;
  napi_status s = napi_add_env_cleanup_hook(env, free_contexts, z);
  if (s != napi_ok) {
    free(z);
    return s;
  }
  napi_property_descriptor props[] = {
    { "zstdCompressFrame", NULL, compress_frame_js, NULL, NULL, NULL, napi_enumerable, z },
    { "zstdDecompressFrame", NULL, decompress_frame_js, NULL, NULL, NULL, napi_enumerable, z },
    { "zstdVersion", NULL, version_js, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
