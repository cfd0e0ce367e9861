/**
 * A pool of codec worker threads (codec-worker.ts), one per core, for the CPU-heavy part of moving pages into
 * and out of backup pieces: page hashes, zstd/gzip, AES-GCM, CRC-32, a piece's SHA-256. For a backup
 * the main thread keeps what must happen in order (reading pages, writing pieces) and overlaps it with the
 * workers' work; for a restore the workers also read the chunks and write the pages (the main thread keeps
 * the order and the counts). No page is copied on its way through a worker:
 *
 *   encode  the caller reads pages straight into an encode buffer (shared memory, layout below); a worker
 *           frames the chunk (chunk header + stored bytes) in that same memory: in place for an
 *           uncompressed, unencrypted set, otherwise in the buffer's output area (zstd compresses straight
 *           into it: no allocation and no copy per chunk).
 *   restore a worker reads a chunk into shared memory (the caller does, for a piece held in memory), checks
 *           and decodes it in place, compares the page hashes with the expected ones, and writes the pages to
 *           the target file; raw bytes that differ from the stored ones (compressed or encrypted) go into
 *           room the caller gives in that same memory.
 *   hash    a SHA-256 taken over bytes in shared memory, in order, by one worker (a PieceHasher): a piece's
 *           checksum, off the main thread.
 *
 * Results come back in the order asked for by ordered(): callers submit ahead (a bounded number of chunks in
 * flight, so memory stays a few MiB per core) and consume in order.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RedoshipError, type ErrorCode } from '../error/index.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_PAGES, maxStoredBytes, type Compression, type PieceFormat } from './piece.js';
import type { PageHashAlgorithm } from '../sqlite/index.js';

/*
 * ENCODE BUFFER, one chunk's worth: a chunk header's room, MAX_CHUNK_PAGES page-number slots (u32 BE), then
 * room for MAX_CHUNK_PAGES images. The caller fills count slots and count images from the start of each
 * area; the worker moves the images of a short chunk up behind its page numbers, so that header, page
 * numbers and images are contiguous: the raw bytes of piece.ts's chunk format. Behind the images, an output
 * area (encodeOutputAt) with room for a chunk header and the most stored bytes a chunk may have.
 */
export const ENCODE_PGNOS_AT = CHUNK_HEADER_BYTES;
export const ENCODE_IMAGES_AT = CHUNK_HEADER_BYTES + MAX_CHUNK_PAGES * 4;
/** Where a compressed or encrypted chunk is framed (header + stored bytes), behind the images. */
export const encodeOutputAt = (pageSize: number): number => ENCODE_IMAGES_AT + MAX_CHUNK_PAGES * pageSize;
export const encodeBufferBytes = (pageSize: number): number => encodeOutputAt(pageSize) + CHUNK_HEADER_BYTES + maxStoredBytes(pageSize);

export type CodecRequest =
  | { readonly id: number; readonly op: 'encode'; readonly buf: SharedArrayBuffer; readonly count: number; readonly pageSize: number; readonly algorithm: Compression; readonly level: number; readonly key: Uint8Array | null }
  | {
      readonly id: number;
      readonly op: 'restore';
      readonly name: string;
      /** Of the chunk's header in the piece (for messages). */
      readonly offset: number;
      readonly slab: SharedArrayBuffer;
      /** Where the chunk's stored bytes are (or go) in `slab`, and how many. */
      readonly start: number;
      readonly length: number;
      /** Read them first from this fd (a local piece) at readAt; -1 when the caller put them in the slab. */
      readonly readFd: number;
      readonly readAt: number;
      readonly count: number;
      readonly crc: number;
      readonly pageSize: number;
      /** The piece's header (piece.ts): what the chunk's CRC covers and how it is compressed. */
      readonly format: PieceFormat;
      readonly key: Uint8Array | null;
      /** Where in `slab` decoded bytes that differ from the stored ones go (count * (4 + pageSize) of room), or -1. */
      readonly rawAt: number;
      /** The hashes the pages must have, in order (count * PAGE_HASH_BYTES): checked before anything is written. */
      readonly expected: Uint8Array;
      /** How those hashes were taken (the set's manifest). */
      readonly pageHashAlgorithm: PageHashAlgorithm;
      /** The file the checked pages are written to, each at (pgno - 1) * pageSize; its path for messages. */
      readonly targetFd: number;
      readonly targetPath: string;
      /** An Int32 word the workers writing to targetFd take in turn (0 free, 1 taken): see codec-worker.ts. */
      readonly writeLock: SharedArrayBuffer;
    }
  | { readonly id: number; readonly op: 'hash-update'; readonly hasher: number; readonly bytes: SharedArrayBuffer; readonly start: number; readonly length: number }
  | { readonly id: number; readonly op: 'hash-digest'; readonly hasher: number };

export type CodecReply =
  | { readonly id: number; readonly ok: true; readonly op: 'encode'; readonly framed: Uint8Array; readonly hashes: Uint8Array; readonly inPlace: boolean }
  | { readonly id: number; readonly ok: true; readonly op: 'restore'; readonly firstPgno: number; readonly lastPgno: number }
  | { readonly id: number; readonly ok: true; readonly op: 'hash-update' }
  | { readonly id: number; readonly ok: true; readonly op: 'hash-digest'; readonly hex: string }
  | { readonly id: number; readonly ok: false; readonly code: ErrorCode; readonly message: string; readonly hint: string };

export interface EncodeResult {
  /** Chunk header, then the stored bytes: exactly what the piece holds for this chunk (in shared memory). */
  readonly framed: Buffer;
  /** PAGE_HASH_BYTES per page, in order. */
  readonly hashes: Buffer;
  /** framed is the encode buffer's memory (always, now); else the encode buffer may be reused at once. */
  readonly inPlace: boolean;
}

/** A chunk restored: its pages are checked and written; the first and last page number (ascending within it). */
export interface RestoreResult {
  readonly firstPgno: number;
  readonly lastPgno: number;
}

export interface PieceHasher {
  update(bytes: SharedArrayBuffer, start: number, length: number): Promise<void>;
  /** The digest (hex); the hasher is done. */
  digest(): Promise<string>;
}

type Pending = { resolve(r: unknown): void; reject(e: unknown): void };

const WORKER_URL = new URL('./codec-worker.js', import.meta.url);

const view = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** How long the shared pool outlives its last user: a primary that takes backups often keeps it warm. */
const SHARED_IDLE_MS = 60_000;

export class CodecPool {
  private readonly workers: Array<{ w: Worker; pending: Map<number, Pending> }> = [];
  private nextId = 1;
  private nextHasher = 0;
  private failed: unknown = null;
  /** Requests in flight: the workers keep the process alive only while there are some. */
  private inflight = 0;
  private users = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private static sharedPool: CodecPool | null = null;

  private constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER_URL);
      w.unref();
      const pending = new Map<number, Pending>();
      w.on('message', (r: CodecReply) => {
        const p = pending.get(r.id);
        if (!p) return;
        pending.delete(r.id);
        this.done(1);
        if (!r.ok) p.reject(new RedoshipError(r.code, r.message, r.hint));
        else if (r.op === 'encode') p.resolve({ framed: view(r.framed), hashes: view(r.hashes), inPlace: r.inPlace } satisfies EncodeResult);
        else if (r.op === 'restore') p.resolve({ firstPgno: r.firstPgno, lastPgno: r.lastPgno } satisfies RestoreResult);
        else p.resolve(r.op === 'hash-digest' ? r.hex : undefined);
      });
      const fail = (e: unknown) => {
        this.failed ??= e;
        this.done(pending.size);
        for (const p of pending.values()) p.reject(e);
        pending.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => fail(new Error(`assert: a codec worker exited (code ${code})`)));
      this.workers.push({ w, pending });
    }
  }

  /** One worker per core the process may use. */
  static start(n = availableParallelism()): CodecPool {
    return new CodecPool(Math.max(1, n));
  }

  /**
   * The process's shared pool, started if there is none (or it failed); give it back with release(). Starting
   * workers costs ~80 ms here (a thread, the module, zstd), as much as a whole level 1: a process that takes
   * or restores several sets (a primary serving backup requests) starts them once. Idle workers never keep
   * the process alive, and the pool ends SHARED_IDLE_MS after its last user.
   */
  static shared(): CodecPool {
    let p = CodecPool.sharedPool;
    if (!p || p.failed) p = CodecPool.sharedPool = new CodecPool(Math.max(1, availableParallelism()));
    if (p.idleTimer) clearTimeout(p.idleTimer);
    p.idleTimer = null;
    p.users++;
    return p;
  }

  /** Whether a shared pool is running now (then using it for a small set costs nothing to start). */
  static sharedIsWarm(): boolean {
    return CodecPool.sharedPool !== null && !CodecPool.sharedPool.failed;
  }

  /** Gives back a pool from shared(); a pool that failed is closed at once. */
  async release(): Promise<void> {
    this.users = Math.max(0, this.users - 1);
    if (this.failed) {
      if (CodecPool.sharedPool === this) CodecPool.sharedPool = null;
      await this.close();
      return;
    }
    if (this.users > 0) return;
    this.idleTimer = setTimeout(() => {
      if (CodecPool.sharedPool === this) CodecPool.sharedPool = null;
      void this.close();
    }, SHARED_IDLE_MS);
    this.idleTimer.unref();
  }

  private done(n: number): void {
    if (n <= 0) return;
    this.inflight -= n;
    if (this.inflight === 0) for (const { w } of this.workers) w.unref();
  }

  get size(): number {
    return this.workers.length;
  }

  private send<T>(req: CodecRequest, transfer: ArrayBuffer[], worker?: number): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    // The least busy worker: chunks differ in cost (a compressible chunk is cheaper).
    const slot = worker !== undefined ? this.workers[worker % this.workers.length]! : this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const p = new Promise<T>((resolve, reject) => slot.pending.set(req.id, { resolve: resolve as (r: unknown) => void, reject }));
    if (this.inflight++ === 0) for (const { w } of this.workers) w.ref();
    slot.w.postMessage(req, transfer);
    return p;
  }

  /** buf: an encode buffer (see above) holding count pages; the caller leaves it alone until the result. */
  encode(buf: SharedArrayBuffer, count: number, pageSize: number, algorithm: Compression, level: number, key: Buffer | undefined): Promise<EncodeResult> {
    return this.send({ id: this.nextId++, op: 'encode', buf, count, pageSize, algorithm, level, key: key ? new Uint8Array(key) : null }, []);
  }

  /**
   * Restores one chunk (the request above): a worker reads its stored bytes into the slab unless they are
   * there, checks and decodes them in place, compares each page with its expected hash, and writes the pages
   * to the target. Reading and writing on the workers leaves the main thread only the walk over the chunk
   * headers: on two cores a third busy thread was the bottleneck. The caller must not close targetFd or
   * reuse the slab until the promise settles.
   */
  restore(r: Omit<Extract<CodecRequest, { op: 'restore' }>, 'id' | 'op' | 'key'> & { readonly key: Buffer | undefined }): Promise<RestoreResult> {
    return this.send({ ...r, id: this.nextId++, op: 'restore', key: r.key ? new Uint8Array(r.key) : null }, []);
  }

  /**
   * A SHA-256 taken by one worker over the ranges given to update(), in the order given (a worker handles
   * its messages in order). An update resolves once the worker is done with those bytes.
   */
  hasher(): PieceHasher {
    const hasher = this.nextHasher++;
    return {
      update: (bytes, start, length) => this.send({ id: this.nextId++, op: 'hash-update', hasher, bytes, start, length }, [], hasher),
      digest: () => this.send({ id: this.nextId++, op: 'hash-digest', hasher }, [], hasher),
    };
  }

  /** How many chunks a caller should keep in flight to keep every worker busy. */
  get depth(): number {
    return 2 * this.workers.length + 2;
  }

  async close(): Promise<void> {
    this.failed ??= new Error('assert: codec pool closed');
    await Promise.all(this.workers.map(({ w }) => w.terminate()));
  }
}

/**
 * Runs tasks ahead, at most `depth` in flight, and yields their results in order. A task that fails fails
 * the iteration when its turn comes; when the consumer stops early, its control comes back only once the
 * tasks still in flight have settled (their results are dropped).
 */
export async function* ordered<T>(tasks: Iterable<() => Promise<T>>, depth: number): AsyncGenerator<T> {
  const inflight: Array<Promise<T>> = [];
  try {
    for (const t of tasks) {
      const p = t();
      p.catch(() => undefined); // handled when its turn comes
      inflight.push(p);
      if (inflight.length >= depth) yield await inflight.shift()!;
    }
    while (inflight.length) yield await inflight.shift()!;
  } finally {
    // A consumer that stops early (an error) gets control back only once every task has settled: a task
    // may still be using memory or a file descriptor the consumer is about to reuse or close.
    await Promise.allSettled(inflight);
    inflight.length = 0;
  }
}
