#ifndef PACKER_AGE_H
#define PACKER_AGE_H
#include <stddef.h>

/* Whole small files as age v1 files (age.c). */
enum { AGE_X25519 = 0, AGE_SSH_RSA = 1 };
typedef struct age_recipients age_recipients;

age_recipients *age_recipients_new (size_t n);
/* 0, or -1 when the key is not usable here (the caller falls back to JavaScript). */
int age_recipients_add_x25519 (age_recipients *rs, const unsigned char pub[32]);
int age_recipients_add_ssh_rsa (age_recipients *rs, const unsigned char *spki, size_t len, const char *tag);
void age_recipients_free (age_recipients *rs);
/* Room a header needs, and the size of a whole age file. */
size_t age_header_bound (const age_recipients *rs);
size_t age_file_size (size_t header, size_t plain);
/* The header for a file key: its length, or -1. */
long age_header (const age_recipients *rs, const unsigned char file_key[16], char *out);
/* Seals `plain` into `out` (a fresh file key, returned): the header's length, or -1. `digest` gets the SHA-256 of it all. */
long age_seal_file (const age_recipients *rs, const unsigned char *plain, size_t n, unsigned char *out, size_t out_len,
                    unsigned char file_key[16], unsigned char digest[32]);
/* Opens a whole age file with its file key into `out` (room for n bytes): the plaintext's length, or -1 on any fault. */
long age_open_file (const unsigned char file_key[16], const unsigned char *in, size_t n, unsigned char *out);
/* Opens `count` sealed chunks from chunk `first` on into `out`: how many opened before one failed, or -1. */
long age_open_chunks (const unsigned char payload_key[32], size_t first, size_t count, size_t last_index, size_t last_plain,
                      const unsigned char *in, unsigned char *out);
/* Seals `count` chunks of plaintext from chunk `first` on into `out`: 0, or -1. */
long age_seal_chunks (const unsigned char payload_key[32], size_t first, size_t count, size_t last_index, size_t last_plain,
                      const unsigned char *in, unsigned char *out);
#endif
