/**
 * packer as a library: the commands of the `packer` CLI as functions taking plain option objects. Long commands
 * report through `onEvent` (the events `--json` prints, and progress) and `onWarning`; failures are PackerErrors.
 */
export { pack, type PackOptions, type PackEvent, type PackResult, type PackSkip, type PackResume } from './api/pack.js'
export { plan, packShard, join, status, type PlanOptions, type PlanResult, type ShardOptions, type ShardResult, type JoinEvent, type JoinResult, type WorkStatus, type ShardStatus, type ShardState } from './api/shards.js'
export { unpack, type UnpackOptions, type UnpackEvent, type UnpackResult } from './api/unpack.js'
export { verify, type VerifyOptions, type VerifyEvent, type VerifyResult, type CarCheck, type CarStatus } from './api/verify.js'
export { list, listMissing, pieces, type ListOptions, type MissingFile } from './api/list.js'
export { openSet, type PackerSet, type SetOptions, type SetManifest, type SetEntry, type PieceInfo } from './api/set.js'
export { fetchSet, type FetchOptions, type FetchEvent, type FetchResult } from './api/fetch.js'
export { mount, unmount, type MountOptions, type MountHandle } from './api/mount.js'
export { serveSet as serve, type ServeOptions, type SetServer, type AccessLogEntry } from './serve/server.js'
export { keygen, type AgeKey, type RsaKeyPair } from './api/keygen.js'
export { rebuild } from './api/rebuild.js'
export { commpBackend, type CommpBackend } from './api/commp.js'
export type { KeyOptions, RecipientOptions, Passphrase } from './api/keys.js'
export type { Callbacks, ProgressEvent, FileEvent } from './api/events.js'
export { PackerError, type ErrorCode } from './errors.js'
export { VERSION } from './version.js'
