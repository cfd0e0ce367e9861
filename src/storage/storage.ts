/**
 * Where backup bytes live (DESIGN.md Backups: media management). One small interface that a local directory
 * and an S3 bucket both implement honestly; retries, checksums, compression and encryption sit above it, once.
 *
 * Contract:
 *  - Keys are '/'-separated paths relative to the storage's root, without '..', without a leading '/'.
 *  - put(): the object becomes visible whole or not at all (a reader never sees half a piece), and is
 *    durable when the promise resolves. Putting an existing key replaces it.
 *  - get(): the bytes, or RedoshipError NOT_FOUND. With a range [start, end), those bytes only.
 *  - list(prefix): every key starting with prefix, in ascending byte order, with its size.
 *  - remove(): keys that do not exist are not an error.
 */
export interface StorageObject {
  readonly key: string;
  readonly size: number;
}

export interface Storage {
  /** Where this is, for messages (a directory path, an s3:// URL). */
  readonly location: string;
  put(key: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void>;
  get(key: string, range?: readonly [start: number, end: number]): Promise<Buffer>;
  list(prefix: string): AsyncIterable<StorageObject>;
  remove(keys: readonly string[]): Promise<void>;
}

export function checkKey(key: string): void {
  if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '' || p === '.' || p === '..'))
    throw new Error(`assert: bad storage key ${JSON.stringify(key)}`);
}
