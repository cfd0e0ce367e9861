/**
 * A pool of codec worker threads (codec-worker.ts), one per core, for the CPU-heavy part of moving pages into
 * and out of backup pieces: SHA-256 page hashes, zstd/gzip, AES-GCM, CRC-32. The main thread keeps what must
 * happen in order (reading pages, writing pieces and files, a piece's SHA-256) and overlaps it with the
 * workers' work. Buffers go to a worker and back without copies where they own their memory.
 *
 * Results come back in the order asked for by ordered(): callers submit ahead (a bounded number of chunks in
 * flight, so memory stays a few MiB per core) and consume in order.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RedoshipError, type ErrorCode } from '../error/index.js';
import type { Compression } from './piece.js';

export type CodecRequest =
  | { readonly id: number; readonly op: 'encode'; readonly buf: ArrayBuffer; readonly count: number; readonly pageSize: number; readonly algorithm: Compression; readonly level: number; readonly key: Uint8Array | null }
  | {
      readonly id: number;
      readonly op: 'decode';
      readonly name: string;
      readonly offset: number;
      readonly stored: ArrayBuffer;
      readonly count: number;
      readonly crc: number;
      readonly pageSize: number;
      readonly algorithm: Compression;
      readonly key: Uint8Array | null;
    };

export type CodecReply =
  | { readonly id: number; readonly ok: true; readonly bytes: Uint8Array; readonly crc: number; readonly hashes: Uint8Array }
  | { readonly id: number; readonly ok: false; readonly code: ErrorCode; readonly message: string; readonly hint: string };

/** Encoded: the stored bytes and CRC of a chunk. Decoded: its raw bytes (page numbers, then images). Both: page hashes. */
export interface CodecResult {
  readonly bytes: Buffer;
  readonly crc: number;
  readonly hashes: Buffer;
}

type Pending = { resolve(r: CodecResult): void; reject(e: unknown): void };

const WORKER_URL = new URL('./codec-worker.js', import.meta.url);

export class CodecPool {
  private readonly workers: Array<{ w: Worker; pending: Map<number, Pending> }> = [];
  private nextId = 1;
  private failed: unknown = null;

  private constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER_URL);
      const pending = new Map<number, Pending>();
      w.on('message', (r: CodecReply) => {
        const p = pending.get(r.id);
        if (!p) return;
        pending.delete(r.id);
        if (r.ok) p.resolve({ bytes: Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), crc: r.crc, hashes: Buffer.from(r.hashes.buffer, r.hashes.byteOffset, r.hashes.byteLength) });
        else p.reject(new RedoshipError(r.code, r.message, r.hint));
      });
      const fail = (e: unknown) => {
        this.failed ??= e;
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

  get size(): number {
    return this.workers.length;
  }

  private send(req: CodecRequest, transfer: ArrayBuffer[]): Promise<CodecResult> {
    if (this.failed) return Promise.reject(this.failed);
    // The least busy worker: chunks differ in cost (a compressible chunk is cheaper).
    const slot = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const p = new Promise<CodecResult>((resolve, reject) => slot.pending.set(req.id, { resolve, reject }));
    slot.w.postMessage(req, transfer);
    return p;
  }

  /** buf (moved to the worker): page numbers in MAX_CHUNK_PAGES u32 slots, then count images. */
  encode(buf: ArrayBuffer, count: number, pageSize: number, algorithm: Compression, level: number, key: Buffer | undefined): Promise<CodecResult> {
    return this.send({ id: this.nextId++, op: 'encode', buf, count, pageSize, algorithm, level, key: key ? new Uint8Array(key) : null }, [buf]);
  }

  /** stored (moved to the worker): exactly the chunk's stored bytes. */
  decode(name: string, offset: number, stored: ArrayBuffer, count: number, crc: number, pageSize: number, algorithm: Compression, key: Buffer | undefined): Promise<CodecResult> {
    return this.send({ id: this.nextId++, op: 'decode', name, offset, stored, count, crc, pageSize, algorithm, key: key ? new Uint8Array(key) : null }, [stored]);
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
 * the iteration when its turn comes; tasks still in flight when the consumer stops are left to settle.
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
    inflight.length = 0;
  }
}
