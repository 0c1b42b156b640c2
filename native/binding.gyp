{
  "targets": [
    {
      "target_name": "packer_native",
      "sources": ["src/addon.c", "src/commp.c", "src/sha256_node.c", "src/age.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2"],
      "defines": ["_GNU_SOURCE"],
      "libraries": ["-lpthread", "-ldl"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=gnu11"] }
    }
  ]
}
