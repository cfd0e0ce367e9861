/**
 * Taking a backup set from a consistent snapshot (a primary's pinned read transaction, at an LSN durable in
 * the archive). Level 0 holds every page; level 1 holds the pages that changed since its parent, found from
 * the redo in the archive between the two LSNs (change tracking: no page is read to find them). Pieces are
 * written first, the manifest last, so a set without a manifest is incomplete and ignored.
 *
 * It yields to the event loop after every chunk: in a primary's process, capture goes on meanwhile.
 */
import { createHash } from 'node:crypto';
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalStorage } from '../storage/index.js';
import { RedoshipError } from '../error/index.js';
import type { Archive, Lsn } from '../redo/index.js';
import { MAX_CHUNK_PAGES, pieceHeader, type CompressionSpec } from './piece.js';
import { CodecPool, ENCODE_IMAGES_AT, ENCODE_PGNOS_AT, encodeBufferBytes, ordered, type EncodeResult, type PieceHasher } from './codec-pool.js';
import { encodeChunkBuffer } from './chunk-codec.js';
import { PAGE_HASH_ALGORITHM } from '../sqlite/index.js';
import type { BackupManifest, PieceInfo, Repo } from './repo.js';
import { catalogAdd } from './catalog.js';
import { newSetKey } from './key.js';

export interface BackupSource {
  readonly lsn: Lsn;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly pageSize: number;
  pages(): Iterable<readonly [number, Uint8Array]>;
  pagesAt(pgnos: readonly number[]): Iterable<readonly [number, Uint8Array]>;
  /** Pages first..first+count-1 into `into` (count * pageSize bytes): a level 0 reads with this when given. */
  readPages?(first: number, count: number, into: Buffer): void;
}

/** Pages (and their bytes) of a set written so far, of total. */
export interface BackupProgress {
  readonly pages: number;
  readonly total: number;
  readonly bytes: number;
}

export interface TakeOptions {
  readonly level: 0 | 1;
  /** Level 1 relative to the last level 0 (cumulative) instead of the last level 0 or 1 (differential). */
  readonly cumulative: boolean;
  readonly compression: CompressionSpec;
  /** Start a new piece once one holds this many bytes. */
  readonly maxPieceBytes: number;
  /** Encrypt the pieces with a key derived from this secret (AES-256-GCM). */
  readonly encryptionSecret?: Buffer;
  readonly onProgress?: (p: BackupProgress) => void;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

export function setName(endLsn: bigint, level: 0 | 1, cumulative: boolean, at: Date): string {
  const t = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${endLsn.toString().padStart(20, '0')}-L${level}${level === 1 && cumulative ? 'c' : ''}-${t}`;
}

export async function takeBackupSet(repo: Repo, archive: Archive, src: BackupSource, o: TakeOptions): Promise<BackupManifest> {
  const sets = await repo.sets();
  let parent: BackupManifest | null = null;
  let pgnos: number[] | null = null;
  if (o.level === 1) {
    const candidates = sets.filter((s) => BigInt(s.endLsn) <= src.lsn && (o.cumulative ? s.level === 0 : true));
    parent = candidates[candidates.length - 1] ?? null;
    if (!parent)
      throw new RedoshipError('TARGET_UNREACHABLE', `no ${o.cumulative ? 'level 0' : 'backup'} at or before LSN ${src.lsn} to base a level 1 on`, 'take a level 0 first: redoship backup --level 0 ...');
    // Change tracking: the pages the redo wrote after the parent.
    const changed = new Set<number>();
    const from = (BigInt(parent.endLsn) + 1n) as Lsn;
    if (from <= src.lsn) {
      try {
        for (const p of archive.pagesWritten(from, src.lsn)) if (p <= src.sizePages) changed.add(p);
      } catch (e) {
        throw new RedoshipError('ARCHIVE_GAP', `the archive no longer holds the redo between ${parent.name} and LSN ${src.lsn}: ${(e as Error).message}`, 'take a level 0 instead', { cause: e });
      }
    }
    pgnos = [...changed].sort((a, b) => a - b);
  }
  return writeSet(repo, {
    level: o.level,
    cumulative: o.level === 1 && o.cumulative,
    parent,
    endLsn: src.lsn,
    commitTimeUs: src.commitTimeUs,
    sizePages: src.sizePages,
    pageSize: src.pageSize,
    pages: pgnos ? src.pagesAt(pgnos) : src.pages(),
    ...(!pgnos && src.readPages ? { readPages: src.readPages.bind(src) } : {}),
    pageCount: pgnos ? pgnos.length : src.sizePages,
    compression: o.compression,
    maxPieceBytes: o.maxPieceBytes,
    ...(o.encryptionSecret ? { encryptionSecret: o.encryptionSecret } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
}

export interface SetContent {
  readonly level: 0 | 1;
  readonly cumulative: boolean;
  readonly parent: BackupManifest | null;
  readonly endLsn: bigint;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly pageSize: number;
  /** Ascending pgno; buffers may be reused by the source. */
  readonly pages: Iterable<readonly [number, Uint8Array]>;
  /** When given, the set is pages 1..pageCount, read with this into the chunk buffers (no copy) instead of `pages`. */
  readonly readPages?: (first: number, count: number, into: Buffer) => void;
  readonly pageCount: number;
  readonly compression: CompressionSpec;
  readonly maxPieceBytes: number;
  readonly synthetic?: boolean;
  readonly encryptionSecret?: Buffer;
  readonly onProgress?: (p: BackupProgress) => void;
}

/** One encoded chunk, in pgno order. */
interface EncodedChunk {
  /** Chunk header and stored bytes, as the piece holds them (shared memory: a worker takes the piece's SHA-256). */
  readonly framed: Buffer;
  readonly hashes: Buffer;
  readonly count: number;
  readonly firstPgno: number;
  readonly lastPgno: number;
  /** The encode buffer framed lives in, to reuse once it is written and hashed; null when already free. */
  readonly buffer: SharedArrayBuffer | null;
}

/** A set of at most this many page bytes is encoded on the calling thread, unless workers are running: starting them would cost more. */
const INLINE_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The set's pages as encoded chunks, in order. Pages are read (or copied, from an iterable source that may
 * reuse its buffers) into encode buffers, and hashed, compressed and encrypted by the pool's workers
 * meanwhile (or here, without a pool). Encode buffers are reused (fresh memory costs a page fault per
 * 4 KiB): at once when the chunk was framed elsewhere, else when the caller puts them back in `spares`.
 */
function encodeChunks(pool: CodecPool | null, c: SetContent, key: Buffer | undefined, spares: SharedArrayBuffer[]): AsyncGenerator<EncodedChunk> {
  const pageSize = c.pageSize;
  const encode = (sab: SharedArrayBuffer, count: number): Promise<EncodeResult> | EncodeResult => {
    if (pool) return pool.encode(sab, count, pageSize, c.compression.algorithm, c.compression.level, key);
    const r = encodeChunkBuffer(Buffer.from(sab), count, pageSize, c.compression, key);
    return { framed: r.framed, hashes: r.hashes, inPlace: r.inPlace };
  };
  const submit = (sab: SharedArrayBuffer, count: number, firstPgno: number, lastPgno: number) => async (): Promise<EncodedChunk> => {
    const r = await encode(sab, count);
    if (!r.inPlace) spares.push(sab);
    return { framed: r.framed, hashes: r.hashes, count, firstPgno, lastPgno, buffer: r.inPlace ? sab : null };
  };
  const fresh = (): Buffer => Buffer.from(spares.pop() ?? new SharedArrayBuffer(encodeBufferBytes(pageSize)));
  function* tasks(): Generator<() => Promise<EncodedChunk>> {
    if (c.readPages) {
      for (let first = 1; first <= c.pageCount; first += MAX_CHUNK_PAGES) {
        const n = Math.min(MAX_CHUNK_PAGES, c.pageCount - first + 1);
        const buf = fresh();
        c.readPages(first, n, buf.subarray(ENCODE_IMAGES_AT, ENCODE_IMAGES_AT + n * pageSize));
        for (let i = 0; i < n; i++) buf.writeUInt32BE(first + i, ENCODE_PGNOS_AT + i * 4);
        yield submit(buf.buffer as SharedArrayBuffer, n, first, first + n - 1);
      }
      return;
    }
    let buf = fresh();
    let n = 0;
    let first = 0;
    let last = 0;
    for (const [pgno, page] of c.pages) {
      if (n === 0) first = pgno;
      buf.writeUInt32BE(pgno, ENCODE_PGNOS_AT + n * 4);
      buf.set(page, ENCODE_IMAGES_AT + n * pageSize);
      last = pgno;
      if (++n === MAX_CHUNK_PAGES) {
        yield submit(buf.buffer as SharedArrayBuffer, n, first, last);
        buf = fresh();
        n = 0;
      }
    }
    if (n > 0) yield submit(buf.buffer as SharedArrayBuffer, n, first, last);
  }
  return ordered(tasks(), pool ? pool.depth : 1);
}

/** A piece's SHA-256 taken here, for a set encoded without workers. */
function inlineHasher(): PieceHasher {
  const h = createHash('sha256');
  return {
    update: (bytes, start, length) => {
      h.update(new Uint8Array(bytes, start, length));
      return Promise.resolve();
    },
    digest: () => Promise.resolve(h.digest('hex')),
  };
}

/** A copy in shared memory, for a PieceHasher. */
function shared(b: Buffer): Buffer {
  const out = Buffer.from(new SharedArrayBuffer(b.length));
  b.copy(out);
  return out;
}

/**
 * Writes a backup set: pieces, page hashes, then the manifest (last), then the catalog entry. Each piece is
 * streamed to storage as its chunks are encoded; its SHA-256 is taken on the way.
 */
export async function writeSet(repo: Repo, c: SetContent): Promise<BackupManifest> {
  const parent = c.parent;
  const name = setName(c.endLsn, c.level, c.cumulative, new Date());
  const enc = c.encryptionSecret ? newSetKey(c.encryptionSecret) : null;
  const prefix = `sets/${name}`;
  const pieces: PieceInfo[] = [];
  const hashes: Buffer[] = [];
  let total = 0;
  let bytesRead = 0;
  // A small set is encoded here, unless the process's workers are running already.
  const pool = c.pageCount * c.pageSize > INLINE_MAX_BYTES || CodecPool.sharedIsWarm() ? CodecPool.shared() : null;
  const spares: SharedArrayBuffer[] = [];
  const chunks = encodeChunks(pool, c, enc?.key, spares);
  // A local put() has written a body's buffer when it asks for the next one (LocalStorage), so an encode
  // buffer holding an uncompressed chunk can be reused then; other storage may keep buffers longer.
  const reuseWritten = repo.storage instanceof LocalStorage;
  try {
    let next = await chunks.next();
    while (!next.done) {
      const pname = `piece-${String(pieces.length).padStart(5, '0')}`;
      // The piece's SHA-256, taken in order by one worker while the next chunks are encoded.
      const sha = pool ? pool.hasher() : inlineHasher();
      const hashing: Array<Promise<void>> = [];
      const first = next.value.firstPgno;
      let last = first;
      let bytes = 0;
      let pages = 0;
      const header = shared(pieceHeader(c.compression, enc !== null));
      const hash = (b: Buffer): Promise<void> => {
        const p = sha.update(b.buffer as SharedArrayBuffer, b.byteOffset, b.length);
        p.catch(() => undefined); // seen by digest()
        hashing.push(p);
        return p;
      };
      async function* body(): AsyncGenerator<Uint8Array> {
        hash(header);
        bytes += header.length;
        yield header;
        for (;;) {
          const e = (next as IteratorYieldResult<EncodedChunk>).value;
          const hashed = hash(e.framed);
          bytes += e.framed.length;
          pages += e.count;
          last = e.lastPgno;
          total += e.count;
          bytesRead += e.count * c.pageSize;
          hashes.push(e.hashes);
          yield e.framed;
          const buffer = e.buffer;
          if (buffer && reuseWritten) void hashed.then(() => spares.push(buffer), () => undefined);
          c.onProgress?.({ pages: total, total: c.pageCount, bytes: bytesRead });
          // In a primary's process, capture goes on between chunks.
          await tick();
          next = await chunks.next();
          if (next.done || bytes >= c.maxPieceBytes) return;
        }
      }
      await repo.storage.put(`${prefix}/${pname}`, body());
      for (const p of hashing) await p;
      pieces.push({ name: pname, bytes, sha256: await sha.digest(), pages, firstPgno: first, lastPgno: last });
    }
    await repo.storage.put(`${prefix}/page-hashes`, Buffer.concat(hashes));
  } catch (e) {
    // A set that failed (a full disk, a refused upload) leaves nothing behind: no pieces, no directory.
    await removeSet(repo, prefix).catch(() => undefined);
    throw e;
  } finally {
    await chunks.return(undefined);
    await pool?.release();
  }
  const hashBody = Buffer.concat(hashes);
  const manifest: BackupManifest = {
    format: 1,
    databaseId: repo.identity.databaseId,
    pageSize: c.pageSize,
    name,
    level: c.level,
    cumulative: c.cumulative,
    ...(c.synthetic ? { synthetic: true } : {}),
    parent: parent?.name ?? null,
    base: parent ? parent.base : name,
    startLsn: String(parent ? BigInt(parent.endLsn) + 1n : 1n),
    endLsn: String(c.endLsn),
    endCommitTime: new Date(Number(c.commitTimeUs / 1000n)).toISOString(),
    createdAt: new Date().toISOString(),
    sizePages: c.sizePages,
    pages: total,
    compression: { algorithm: c.compression.algorithm, level: c.compression.level },
    encryption: enc?.encryption ?? null,
    pieces,
    // Every hash of this set was taken by chunk-codec.ts with the algorithm of now.
    pageHashes: { name: 'page-hashes', sha256: createHash('sha256').update(hashBody).digest('hex'), algorithm: PAGE_HASH_ALGORITHM },
  };
  try {
    await repo.storage.put(`${prefix}/manifest.json`, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
  } catch (e) {
    await removeSet(repo, prefix).catch(() => undefined);
    throw e;
  }
  await catalogAdd(repo, manifest);
  return manifest;
}

/** Removes whatever a set's prefix holds (and its directory, in a local repository). */
async function removeSet(repo: Repo, prefix: string): Promise<void> {
  const keys: string[] = [];
  for await (const o of repo.storage.list(`${prefix}/`)) keys.push(o.key);
  await repo.storage.remove(keys);
  if (repo.storage instanceof LocalStorage) await rmdir(join(repo.storage.root, ...prefix.split('/'))).catch(() => undefined);
}
