/*
 * Whole small files as age v1 files (https://age-encryption.org/v1), in one call: a fresh file key, the header with one
 * stanza per recipient (X25519, ssh-rsa) and its MAC, the nonce, the payload sealed in 64 KiB ChaCha20-Poly1305
 * chunks, and the SHA-256 of the result. Most files of a tree are small: in JavaScript each cost two KeyObjects, a
 * dozen buffers and their garbage, about as much as the X25519 arithmetic itself. The OpenSSL linked into node does
 * the cryptography (its symbols are node's own: nothing is linked).
 */
#include "age.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define CHUNK 65536
#define TAG 16

struct age_recipient {
  int kind; /* AGE_X25519 or AGE_SSH_RSA */
  EVP_PKEY *key;
  unsigned char pub[32]; /* X25519: the recipient's point */
  char tag[16];          /* ssh-rsa: the stanza's tag (base64 of 4 bytes, 6 characters) */
};

struct age_recipients {
  size_t n;
  struct age_recipient r[];
};

age_recipients *age_recipients_new (size_t n) {
  age_recipients *rs = calloc(1, sizeof *rs + n * sizeof(struct age_recipient));
  if (rs != NULL) rs->n = 0;
  return rs;
}

int age_recipients_add_x25519 (age_recipients *rs, const unsigned char pub[32]) {
  struct age_recipient *r = &rs->r[rs->n];
  r->key = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, 32);
  if (r->key == NULL) return -1;
  r->kind = AGE_X25519;
  memcpy(r->pub, pub, 32);
  rs->n++;
  return 0;
}

int age_recipients_add_ssh_rsa (age_recipients *rs, const unsigned char *spki, size_t len, const char *tag) {
  struct age_recipient *r = &rs->r[rs->n];
  const unsigned char *p = spki;
  if (strlen(tag) >= sizeof r->tag) return -1;
  r->key = d2i_PUBKEY(NULL, &p, (long)len);
  /* Up to 4096 bits: a larger key's stanza would not fit age_header_bound (the JavaScript path takes it). */
  if (r->key == NULL || EVP_PKEY_get_base_id(r->key) != EVP_PKEY_RSA || EVP_PKEY_get_size(r->key) > 512) {
    EVP_PKEY_free(r->key);
    r->key = NULL;
    return -1;
  }
  r->kind = AGE_SSH_RSA;
  strcpy(r->tag, tag);
  rs->n++;
  return 0;
}

void age_recipients_free (age_recipients *rs) {
  if (rs == NULL) return;
  for (size_t i = 0; i < rs->n; i++) EVP_PKEY_free(rs->r[i].key);
  free(rs);
}

/* Unpadded standard base64, as age writes it. Returns the characters written. */
static size_t b64 (char *out, const unsigned char *in, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = abc[v >> 18]; out[o++] = abc[(v >> 12) & 63]; out[o++] = abc[(v >> 6) & 63]; out[o++] = abc[v & 63];
  }
  if (n - i == 1) {
    unsigned v = (unsigned)in[i] << 16;
    out[o++] = abc[v >> 18]; out[o++] = abc[(v >> 12) & 63];
  } else if (n - i == 2) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
    out[o++] = abc[v >> 18]; out[o++] = abc[(v >> 12) & 63]; out[o++] = abc[(v >> 6) & 63];
  }
  return o;
}

/* A stanza body: base64 lines of 64 columns, the last one shorter (an empty one when the rest fill whole lines). */
static size_t body_lines (char *out, const unsigned char *in, size_t n) {
  char text[1024];
  size_t len = b64(text, in, n), o = 0;
  for (size_t at = 0; ; at += 64) {
    size_t k = len - at < 64 ? len - at : 64;
    memcpy(out + o, text + at, k);
    o += k;
    out[o++] = '\n';
    if (k < 64) break;
  }
  return o;
}

/*
 * OpenSSL 3 looks an algorithm up by name, under a lock, on every implicit use (EVP_sha256() in HMAC(), a context
 * made by id): for a file of a few bytes that cost more than the cryptography. So the algorithms are fetched once per
 * process and each thread keeps its contexts (workers seal concurrently; a context is never shared).
 */
static EVP_MD *sha256_md;
static EVP_CIPHER *chacha_cipher;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MD_CTX *md_ctx;
static _Thread_local EVP_CIPHER_CTX *cipher_ctx;
static _Thread_local EVP_PKEY_CTX *x25519_keygen_ctx;

static void fetch_algorithms (void) {
  sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  chacha_cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

static int thread_contexts (void) {
  pthread_once(&fetch_once, fetch_algorithms);
  if (sha256_md == NULL || chacha_cipher == NULL) return -1;
  if (md_ctx == NULL) md_ctx = EVP_MD_CTX_new();
  if (cipher_ctx == NULL) cipher_ctx = EVP_CIPHER_CTX_new();
  if (x25519_keygen_ctx == NULL) {
    x25519_keygen_ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    if (x25519_keygen_ctx != NULL && EVP_PKEY_keygen_init(x25519_keygen_ctx) != 1) {
      EVP_PKEY_CTX_free(x25519_keygen_ctx);
      x25519_keygen_ctx = NULL;
    }
  }
  return md_ctx != NULL && cipher_ctx != NULL && x25519_keygen_ctx != NULL ? 0 : -1;
}

static int sha256_parts (unsigned char out[32], const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len) {
  return EVP_DigestInit_ex2(md_ctx, sha256_md, NULL) == 1 && EVP_DigestUpdate(md_ctx, a, a_len) == 1 &&
    (b_len == 0 || EVP_DigestUpdate(md_ctx, b, b_len) == 1) && EVP_DigestFinal_ex(md_ctx, out, NULL) == 1 ? 0 : -1;
}

/* HMAC-SHA256 (RFC 2104) on the fetched digest; age's keys are at most one block (64 bytes). */
static int hmac_sha256 (unsigned char out[32], const unsigned char *key, size_t key_len, const unsigned char *msg, size_t n) {
  unsigned char pad[64], inner[32];
  if (key_len > sizeof pad) return -1;
  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < key_len; i++) pad[i] ^= key[i];
  int ok = sha256_parts(inner, pad, sizeof pad, msg, n) == 0;
  for (size_t i = 0; i < sizeof pad; i++) pad[i] ^= 0x36 ^ 0x5c;
  ok = ok && sha256_parts(out, pad, sizeof pad, inner, sizeof inner) == 0;
  OPENSSL_cleanse(pad, sizeof pad);
  return ok ? 0 : -1;
}

/* HKDF-SHA256 with a 32-byte output (all age needs). */
static int hkdf32 (unsigned char out[32], const unsigned char *salt, size_t salt_len, const unsigned char *ikm, size_t ikm_len, const char *info) {
  static const unsigned char zeros[32] = { 0 };
  unsigned char prk[32], msg[128];
  size_t info_len = strlen(info);
  if (info_len + 1 > sizeof msg) return -1;
  if (salt_len == 0) { salt = zeros; salt_len = 32; }
  if (hmac_sha256(prk, salt, salt_len, ikm, ikm_len) != 0) return -1;
  memcpy(msg, info, info_len);
  msg[info_len] = 1;
  int rc = hmac_sha256(out, prk, 32, msg, info_len + 1);
  OPENSSL_cleanse(prk, sizeof prk);
  return rc;
}

/* STREAM's nonce for chunk c: an 11-byte big-endian counter, then 1 for the file's last chunk. */
static void chunk_nonce (unsigned char nonce[12], size_t c, int last) {
  memset(nonce, 0, 12);
  for (int i = 10; i >= 0 && c > 0; i--, c >>= 8) nonce[i] = (unsigned char)(c & 0xff);
  nonce[11] = (unsigned char)last;
}

static int chacha_seal (const unsigned char key[32], const unsigned char nonce[12], const unsigned char *in, size_t n, unsigned char *out) {
  EVP_CIPHER_CTX *c = cipher_ctx;
  int ok = 1, len = 0;
  ok = ok && EVP_EncryptInit_ex2(c, chacha_cipher, key, nonce, NULL) == 1;
  ok = ok && (n == 0 || EVP_EncryptUpdate(c, out, &len, in, (int)n) == 1);
  ok = ok && EVP_EncryptFinal_ex(c, out + len, &len) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, out + n) == 1;
  return ok ? 0 : -1;
}

/* One X25519 stanza: a fresh ephemeral key, the shared secret, the wrapped file key. */
static int x25519_stanza (char *out, size_t *o, const struct age_recipient *r, const unsigned char file_key[16]) {
  EVP_PKEY *eph = NULL;
  EVP_PKEY_CTX *dc = NULL;
  unsigned char share[32], secret[32], salt[64], wrap[32], body[32];
  static const unsigned char zero_nonce[12] = { 0 }, zeros[32] = { 0 };
  size_t len = 32;
  int ok = EVP_PKEY_keygen(x25519_keygen_ctx, &eph) == 1;
  ok = ok && EVP_PKEY_get_raw_public_key(eph, share, &len) == 1 && len == 32;
  ok = ok && (dc = EVP_PKEY_CTX_new(eph, NULL)) != NULL && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, r->key) == 1;
  len = 32;
  ok = ok && EVP_PKEY_derive(dc, secret, &len) == 1 && len == 32 && memcmp(secret, zeros, 32) != 0;
  if (ok) {
    memcpy(salt, share, 32);
    memcpy(salt + 32, r->pub, 32);
    ok = hkdf32(wrap, salt, 64, secret, 32, "age-encryption.org/v1/X25519") == 0 && chacha_seal(wrap, zero_nonce, file_key, 16, body) == 0;
  }
  if (ok) {
    memcpy(out + *o, "-> X25519 ", 10); *o += 10;
    *o += b64(out + *o, share, 32);
    out[(*o)++] = '\n';
    *o += body_lines(out + *o, body, 32);
  }
  OPENSSL_cleanse(secret, sizeof secret);
  OPENSSL_cleanse(wrap, sizeof wrap);
  EVP_PKEY_CTX_free(dc);
  EVP_PKEY_free(eph);
  return ok ? 0 : -1;
}

/* One ssh-rsa stanza: the file key under RSA-OAEP (SHA-256, MGF1-SHA-256) with age's label. */
static int ssh_rsa_stanza (char *out, size_t *o, const struct age_recipient *r, const unsigned char file_key[16]) {
  static const char label[] = "age-encryption.org/v1/ssh-rsa";
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(r->key, NULL);
  unsigned char body[1024];
  size_t len = sizeof body;
  char *l = OPENSSL_malloc(sizeof label - 1);
  int ok = c != NULL && l != NULL && EVP_PKEY_encrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1;
  ok = ok && EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1;
  if (ok) memcpy(l, label, sizeof label - 1);
  ok = ok && EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, (int)(sizeof label - 1)) == 1;
  if (ok) l = NULL; /* owned by the context now */
  ok = ok && EVP_PKEY_encrypt(c, body, &len, file_key, 16) == 1;
  if (ok) {
    size_t t = strlen(r->tag);
    memcpy(out + *o, "-> ssh-rsa ", 11); *o += 11;
    memcpy(out + *o, r->tag, t); *o += t;
    out[(*o)++] = '\n';
    *o += body_lines(out + *o, body, len);
  }
  OPENSSL_free(l);
  EVP_PKEY_CTX_free(c);
  return ok ? 0 : -1;
}

size_t age_header_bound (const age_recipients *rs) {
  return 64 + rs->n * 800;
}

size_t age_file_size (size_t header, size_t plain) {
  size_t chunks = plain == 0 ? 1 : (plain + CHUNK - 1) / CHUNK;
  return header + 16 + plain + chunks * TAG;
}

long age_header (const age_recipients *rs, const unsigned char file_key[16], char *out) {
  unsigned char mac_key[32], mac[32];
  size_t o = 0;
  if (thread_contexts() != 0) return -1;
  memcpy(out, "age-encryption.org/v1\n", 22); o = 22;
  for (size_t i = 0; i < rs->n; i++) {
    int rc = rs->r[i].kind == AGE_X25519 ? x25519_stanza(out, &o, &rs->r[i], file_key) : ssh_rsa_stanza(out, &o, &rs->r[i], file_key);
    if (rc != 0) return -1;
  }
  memcpy(out + o, "---", 3); o += 3;
  if (hkdf32(mac_key, NULL, 0, file_key, 16, "header") != 0) return -1;
  if (hmac_sha256(mac, mac_key, 32, (const unsigned char *)out, o) != 0) return -1;
  out[o++] = ' ';
  o += b64(out + o, mac, 32);
  out[o++] = '\n';
  OPENSSL_cleanse(mac_key, sizeof mac_key);
  return (long)o;
}

long age_seal_file (const age_recipients *rs, const unsigned char *plain, size_t n, unsigned char *out, size_t out_len,
                    unsigned char file_key[16], unsigned char digest[32]) {
  unsigned char nonce[16], payload_key[32], nonce12[12];
  if (RAND_bytes(file_key, 16) != 1 || RAND_bytes(nonce, 16) != 1) return -1;
  long header = age_header(rs, file_key, (char *)out);
  if (header < 0 || age_file_size((size_t)header, n) > out_len) return -1;
  size_t o = (size_t)header;
  memcpy(out + o, nonce, 16); o += 16;
  if (hkdf32(payload_key, nonce, 16, file_key, 16, "payload") != 0) return -1;
  size_t chunks = n == 0 ? 1 : (n + CHUNK - 1) / CHUNK;
  for (size_t c = 0; c < chunks; c++) {
    size_t at = c * CHUNK, k = n - at < CHUNK ? n - at : CHUNK;
    chunk_nonce(nonce12, c, c == chunks - 1);
    if (chacha_seal(payload_key, nonce12, plain + at, k, out + o) != 0) return -1;
    o += k + TAG;
  }
  OPENSSL_cleanse(payload_key, sizeof payload_key);
  if (sha256_parts(digest, out, o, NULL, 0) != 0) return -1;
  return header;
}

/* Opens sealed chunk `c` (k bytes of ciphertext, then its tag) into `out`: 0, or -1 when it fails authentication. */
static int open_chunk (const unsigned char payload_key[32], size_t c, int last, const unsigned char *in, size_t k, unsigned char *out) {
  unsigned char nonce[12];
  chunk_nonce(nonce, c, last);
  EVP_CIPHER_CTX *x = cipher_ctx;
  int len = 0;
  int ok = EVP_DecryptInit_ex2(x, chacha_cipher, payload_key, nonce, NULL) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, TAG, (void *)(in + k)) == 1;
  ok = ok && (k == 0 || EVP_DecryptUpdate(x, out, &len, in, (int)k) == 1);
  ok = ok && EVP_DecryptFinal_ex(x, out + len, &len) == 1;
  return ok ? 0 : -1;
}

/*
 * Opens `count` consecutive sealed chunks, the first being chunk `first` of its file, from `in` into `out` (64 KiB of
 * plaintext per chunk): what a reader does with the chunks inside one leaf. Chunk `last_index` is the file's final one,
 * `last_plain` bytes long. Returns how many opened before the first that failed authentication (count when all did),
 * or -1 when OpenSSL cannot be set up.
 */
long age_open_chunks (const unsigned char payload_key[32], size_t first, size_t count, size_t last_index, size_t last_plain,
                      const unsigned char *in, unsigned char *out) {
  if (thread_contexts() != 0) return -1;
  for (size_t i = 0; i < count; i++) {
    int last = first + i == last_index;
    if (open_chunk(payload_key, first + i, last, in + i * (CHUNK + TAG), last ? last_plain : CHUNK, out + i * CHUNK) != 0) return (long)i;
  }
  return (long)count;
}

/*
 * Seals `count` consecutive chunks of plaintext, the first being chunk `first` of its file, from `in` (64 KiB apart)
 * into `out` (64 KiB + 16 apart): what a pack's worker does with the chunks of one leaf, where node:crypto made a
 * cipher object and a buffer per chunk. Chunk `last_index` is the file's final one, `last_plain` bytes long. 0, or -1
 * when OpenSSL cannot be set up.
 */
long age_seal_chunks (const unsigned char payload_key[32], size_t first, size_t count, size_t last_index, size_t last_plain,
                      const unsigned char *in, unsigned char *out) {
  unsigned char nonce[12];
  if (thread_contexts() != 0) return -1;
  for (size_t i = 0; i < count; i++) {
    int last = first + i == last_index;
    chunk_nonce(nonce, first + i, last);
    if (chacha_seal(payload_key, nonce, in + i * CHUNK, last ? last_plain : CHUNK, out + i * (CHUNK + TAG)) != 0) return -1;
  }
  return 0;
}

/*
 * Opens a whole age file with its file key (the file table holds it): checks the header's MAC, then opens every
 * chunk. Returns the plaintext's length, written to `out` (room for n bytes), or -1 for any fault: a malformed header,
 * a bad MAC, a chunk that fails authentication, truncation, trailing data. The caller's JavaScript path then says
 * which; this one only has to be fast on the files that are sound, the small ones a restore opens by the thousand.
 */
long age_open_file (const unsigned char file_key[16], const unsigned char *in, size_t n, unsigned char *out) {
  static const char intro[] = "age-encryption.org/v1\n";
  unsigned char mac_key[32], mac[32], payload_key[32];
  char mac_b64[44];
  if (thread_contexts() != 0 || n < sizeof intro - 1 || memcmp(in, intro, sizeof intro - 1) != 0) return -1;
  const unsigned char *line = memmem(in, n, "\n--- ", 5);
  if (line == NULL) return -1;
  size_t covered = (size_t)(line - in) + 4; /* the MAC covers the header up to and including "---" */
  const unsigned char *end = memchr(line + 5, '\n', n - covered - 1);
  if (end == NULL || end - (line + 5) != 43) return -1;
  size_t o = (size_t)(end - in) + 1;
  int ok = hkdf32(mac_key, NULL, 0, file_key, 16, "header") == 0 && hmac_sha256(mac, mac_key, 32, in, covered) == 0;
  OPENSSL_cleanse(mac_key, sizeof mac_key);
  if (!ok || b64(mac_b64, mac, 32) != 43 || CRYPTO_memcmp(mac_b64, line + 5, 43) != 0) return -1;
  if (n - o < 16 + TAG || hkdf32(payload_key, in + o, 16, file_key, 16, "payload") != 0) return -1;
  o += 16;
  size_t plain = 0;
  for (size_t c = 0; ; c++) {
    size_t left = n - o, k = left > CHUNK + TAG ? CHUNK : left - TAG;
    int last = left <= CHUNK + TAG;
    if (left < TAG || (last && k == 0 && c > 0)) { ok = 0; break; } /* an empty final chunk only for an empty file */
    if (!(ok = open_chunk(payload_key, c, last, in + o, k, out + plain) == 0)) break;
    plain += k;
    o += k + TAG;
    if (last) break;
  }
  OPENSSL_cleanse(payload_key, sizeof payload_key);
  return ok ? (long)plain : -1;
}
