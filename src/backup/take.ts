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
import { MAX_CHUNK_PAGES, chunkHeader, pieceHeader, type CompressionSpec } from './piece.js';
import { CodecPool, ordered, type CodecResult } from './codec-pool.js';
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
        for (const r of archive.records(from, src.lsn)) for (const [p] of r.pages) if (p <= src.sizePages) changed.add(p);
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
  readonly pageCount: number;
  readonly compression: CompressionSpec;
  readonly maxPieceBytes: number;
  readonly synthetic?: boolean;
  readonly encryptionSecret?: Buffer;
  readonly onProgress?: (p: BackupProgress) => void;
}

/** One encoded chunk, in pgno order. */
interface EncodedChunk extends CodecResult {
  readonly count: number;
  readonly firstPgno: number;
  readonly lastPgno: number;
}

/**
 * The source's pages as encoded chunks, in order: the pages are copied into chunk buffers here (the source
 * may reuse its buffers), and hashed, compressed and encrypted by the pool's workers meanwhile.
 */
function encodeChunks(pool: CodecPool, pages: Iterable<readonly [number, Uint8Array]>, pageSize: number, c: CompressionSpec, key: Buffer | undefined): AsyncGenerator<EncodedChunk> {
  function* tasks(): Generator<() => Promise<EncodedChunk>> {
    let buf = Buffer.allocUnsafeSlow(MAX_CHUNK_PAGES * (4 + pageSize));
    let n = 0;
    let first = 0;
    let last = 0;
    const submit = (b: Buffer, count: number, firstPgno: number, lastPgno: number) => async (): Promise<EncodedChunk> => ({
      ...(await pool.encode(b.buffer as ArrayBuffer, count, pageSize, c.algorithm, c.level, key)),
      count,
      firstPgno,
      lastPgno,
    });
    for (const [pgno, page] of pages) {
      if (n === 0) first = pgno;
      buf.writeUInt32BE(pgno, n * 4);
      buf.set(page, MAX_CHUNK_PAGES * 4 + n * pageSize);
      last = pgno;
      if (++n === MAX_CHUNK_PAGES) {
        yield submit(buf, n, first, last);
        buf = Buffer.allocUnsafeSlow(MAX_CHUNK_PAGES * (4 + pageSize));
        n = 0;
      }
    }
    if (n > 0) yield submit(buf, n, first, last);
  }
  return ordered(tasks(), pool.depth);
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
  const pool = CodecPool.start();
  const chunks = encodeChunks(pool, c.pages, c.pageSize, c.compression, enc?.key);
  try {
    let next = await chunks.next();
    while (!next.done) {
      const pname = `piece-${String(pieces.length).padStart(5, '0')}`;
      const sha = createHash('sha256');
      const first = next.value.firstPgno;
      let last = first;
      let bytes = 0;
      let pages = 0;
      const header = pieceHeader(c.compression, enc !== null);
      async function* body(): AsyncGenerator<Uint8Array> {
        sha.update(header);
        bytes += header.length;
        yield header;
        for (;;) {
          const e = (next as IteratorYieldResult<EncodedChunk>).value;
          const head = chunkHeader(e.bytes.length, e.crc, e.count);
          sha.update(head).update(e.bytes);
          bytes += head.length + e.bytes.length;
          pages += e.count;
          last = e.lastPgno;
          total += e.count;
          bytesRead += e.count * c.pageSize;
          hashes.push(e.hashes);
          yield head;
          yield e.bytes;
          c.onProgress?.({ pages: total, total: c.pageCount, bytes: bytesRead });
          // In a primary's process, capture goes on between chunks.
          await tick();
          next = await chunks.next();
          if (next.done || bytes >= c.maxPieceBytes) return;
        }
      }
      await repo.storage.put(`${prefix}/${pname}`, body());
      pieces.push({ name: pname, bytes, sha256: sha.digest('hex'), pages, firstPgno: first, lastPgno: last });
    }
    await repo.storage.put(`${prefix}/page-hashes`, Buffer.concat(hashes));
  } catch (e) {
    // A set that failed (a full disk, a refused upload) leaves nothing behind: no pieces, no directory.
    await removeSet(repo, prefix).catch(() => undefined);
    throw e;
  } finally {
    await chunks.return(undefined);
    await pool.close();
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
    pageHashes: { name: 'page-hashes', sha256: createHash('sha256').update(hashBody).digest('hex') },
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
