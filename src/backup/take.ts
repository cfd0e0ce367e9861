/**
 * Taking a backup set from a consistent snapshot (a primary's pinned read transaction, at an LSN durable in
 * the archive). Level 0 holds every page; level 1 holds the pages that changed since its parent, found from
 * the redo in the archive between the two LSNs (change tracking: no page is read to find them). Pieces are
 * written first, the manifest last, so a set without a manifest is incomplete and ignored.
 *
 * It yields to the event loop after every chunk: in a primary's process, capture goes on meanwhile.
 */
import { createHash } from 'node:crypto';
import { RedoshipError } from '../error/index.js';
import type { Archive, Lsn } from '../redo/index.js';
import { pageHash } from '../sqlite/index.js';
import { MAX_CHUNK_PAGES, encodeChunk, pieceHeader, type CompressionSpec } from './piece.js';
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

export interface TakeOptions {
  readonly level: 0 | 1;
  /** Level 1 relative to the last level 0 (cumulative) instead of the last level 0 or 1 (differential). */
  readonly cumulative: boolean;
  readonly compression: CompressionSpec;
  /** Start a new piece once one holds this many bytes. */
  readonly maxPieceBytes: number;
  /** Encrypt the pieces with a key derived from this secret (AES-256-GCM). */
  readonly encryptionSecret?: Buffer;
  readonly onProgress?: (p: { pages: number; total: number }) => void;
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
  readonly onProgress?: (p: { pages: number; total: number }) => void;
}

/** Writes a backup set: pieces, page hashes, then the manifest (last), then the catalog entry. */
export async function writeSet(repo: Repo, c: SetContent): Promise<BackupManifest> {
  const o = { compression: c.compression, maxPieceBytes: c.maxPieceBytes, onProgress: c.onProgress };
  const src = { pageSize: c.pageSize, lsn: c.endLsn, commitTimeUs: c.commitTimeUs, sizePages: c.sizePages };
  const parent = c.parent;
  const name = setName(c.endLsn, c.level, c.cumulative, new Date());
  const enc = c.encryptionSecret ? newSetKey(c.encryptionSecret) : null;
  const prefix = `sets/${name}`;
  const pieces: PieceInfo[] = [];
  const hashes: Buffer[] = [];
  let piece: Buffer[] = [];
  let pieceBytes = 0;
  let piecePages = 0;
  let first = 0;
  let last = 0;
  let total = 0;
  const totalWanted = c.pageCount;
  const flushPiece = async () => {
    if (piecePages === 0) return;
    const body = Buffer.concat([pieceHeader(o.compression, enc !== null), ...piece]);
    const pname = `piece-${String(pieces.length).padStart(5, '0')}`;
    await repo.storage.put(`${prefix}/${pname}`, body);
    pieces.push({ name: pname, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), pages: piecePages, firstPgno: first, lastPgno: last });
    piece = [];
    pieceBytes = 0;
    piecePages = 0;
  };
  let chunk: Array<readonly [number, Uint8Array]> = [];
  const flushChunk = async () => {
    if (chunk.length === 0) return;
    const encoded = encodeChunk(chunk, src.pageSize, o.compression, enc?.key);
    if (piecePages === 0) first = chunk[0]![0];
    last = chunk[chunk.length - 1]![0];
    piece.push(encoded);
    pieceBytes += encoded.length;
    piecePages += chunk.length;
    total += chunk.length;
    chunk = [];
    if (pieceBytes >= o.maxPieceBytes) await flushPiece();
    o.onProgress?.({ pages: total, total: totalWanted });
    await tick();
  };
  for (const [pgno, page] of c.pages) {
    const copy = Buffer.from(page); // the source may reuse its buffer for the next page
    chunk.push([pgno, copy]);
    hashes.push(pageHash(pgno, copy));
    if (chunk.length === MAX_CHUNK_PAGES) await flushChunk();
  }
  await flushChunk();
  await flushPiece();
  const hashBody = Buffer.concat(hashes);
  await repo.storage.put(`${prefix}/page-hashes`, hashBody);
  const manifest: BackupManifest = {
    format: 1,
    databaseId: repo.identity.databaseId,
    pageSize: src.pageSize,
    name,
    level: c.level,
    cumulative: c.cumulative,
    ...(c.synthetic ? { synthetic: true } : {}),
    parent: parent?.name ?? null,
    base: parent ? parent.base : name,
    startLsn: String(parent ? BigInt(parent.endLsn) + 1n : 1n),
    endLsn: String(src.lsn),
    endCommitTime: new Date(Number(src.commitTimeUs / 1000n)).toISOString(),
    createdAt: new Date().toISOString(),
    sizePages: src.sizePages,
    pages: total,
    compression: { algorithm: o.compression.algorithm, level: o.compression.level },
    encryption: enc?.encryption ?? null,
    pieces,
    pageHashes: { name: 'page-hashes', sha256: createHash('sha256').update(hashBody).digest('hex') },
  };
  await repo.storage.put(`${prefix}/manifest.json`, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
  await catalogAdd(repo, manifest);
  return manifest;
}
