{
  "targets": [
    {
      "target_name": "packer_native",
      "sources": ["src/addon.c", "src/commp.c", "src/sha256_node.c", "src/age.c", "src/zstd.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"],
      "libraries": ["-lpthread", "-ldl", "-lzstd"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=gnu11"] }
    }
  ]
}
