#ifndef PACKER_ZSTD_FRAMES_H
#define PACKER_ZSTD_FRAMES_H

#include <node_api.h>

/* Defines zstdCompressFrame, zstdDecompressFrame and zstdVersion on `exports` (see zstd.c), with contexts owned by
   this environment. */
napi_status zstd_define(napi_env env, napi_value exports);

#endif
