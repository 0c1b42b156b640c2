/** age v1 (age-encryption.org/v1) on node:crypto: the API the rest of packer uses. See README.md. */
export type { Stanza, Recipient, Identity } from './stanza.js'
export { newFileKey, encodeHeader, parseHeader, headerLengthOf, unwrapFileKey, verifyHeaderMac, type ParsedHeader } from './header.js'
export { AGE_CHUNK_SIZE, ciphertextSize, chunkNonce, payloadKey, newAgeFile, encryptStream, decryptStream, SeekableAgeReader, type AgeFileStart, type SeekableAgeReaderOptions } from './payload.js'
export { parseRecipient, readRecipientsFile, readIdentityFile, parseIdentities, writeX25519IdentityFile, generateRsaCertificatePair } from './keys.js'
export { passphraseRecipient, passphraseIdentity, DEFAULT_SCRYPT_LOG_N, MAX_SCRYPT_LOG_N } from './scrypt.js'
export { generateX25519Identity, x25519IdentityFromString, X25519Identity, X25519Recipient } from './x25519.js'
export { SshRsaRecipient, SshRsaIdentity, SshEd25519Recipient, SshEd25519Identity } from './ssh.js'
