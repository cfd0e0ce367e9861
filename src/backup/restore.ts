/**
 * Restore from a backup repository (and an archive for the redo after the last set): plan the cheapest chain
 * to the target (the latest level 0 at or before it, then the level 1 reaching furthest, repeatedly, then
 * archived redo from --archive or the repository's own copy: repo-redo.ts), then apply it to a temporary
 * file, verify, sync, rename. Incrementals are preferred over
 * redo: applying a set's pages once is cheaper than replaying every transaction they sum up.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { LocalStorage, Writeback } from '../storage/index.js';
import { Archive, buildFile } from '../redo/index.js';
import { RedoSources, type RedoStep } from './repo-redo.js';
import { PAGE_HASH_BYTES } from '../sqlite/index.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_PAGES, PIECE_HEADER_BYTES, maxStoredBytes, pieceCorrupt, readPieceHeader } from './piece.js';
import { CodecPool, ordered, type RestoreResult } from './codec-pool.js';
import { Repo, type BackupManifest } from './repo.js';
import { readCatalog } from './catalog.js';
import { setKey } from './key.js';

export interface RepoRestoreOptions {
  readonly repo: string;
  /** Archive with the redo after the last backup set (optional when a set reaches the target). */
  readonly archive?: string;
  readonly to: string;
  readonly untilLsn?: bigint;
  readonly untilTime?: Date;
  /** Plan only: read no data, write nothing. */
  readonly preview?: boolean;
  /** The secret of encrypted sets (their key file's contents). */
  readonly encryptionSecret?: Buffer;
  /** Called as pages of each set, then redo records, are applied (as often as every chunk or record). */
  readonly onProgress?: (p: RestoreProgress) => void;
}

/** Where a restore is: the step (a set's name, or 'redo'), and its pages or records done of total. */
export interface RestoreProgress {
  readonly step: string;
  readonly unit: 'pages' | 'records';
  readonly done: number;
  readonly total: number;
  /** Bytes of pages written so far, over the whole restore. */
  readonly bytes: number;
}

export type PlanStep =
  | { readonly kind: 'set'; readonly name: string; readonly level: 0 | 1; readonly endLsn: string; readonly pages: number; readonly bytes: number }
  | { readonly kind: 'redo'; readonly source: 'archive' | 'repository'; readonly fromLsn: string; readonly toLsn: string; readonly records: number };

export interface RestorePlan {
  readonly targetLsn: string;
  readonly steps: readonly PlanStep[];
}

export interface RepoRestoreResult {
  readonly plan: RestorePlan;
  readonly path: string | null;
  readonly pagesWritten: number;
}

/** Chooses the chain: level 0, then the level 1 reaching furthest (<= target) among its children, again and again. */
export function planChain(sets: readonly BackupManifest[], target: bigint): BackupManifest[] {
  const usable = sets.filter((s) => BigInt(s.endLsn) <= target);
  const l0 = usable.filter((s) => s.level === 0).pop();
  if (!l0) return [];
  const chain = [l0];
  for (;;) {
    const cur = chain[chain.length - 1]!;
    const next = usable
      .filter((s) => s.level === 1 && s.parent === cur.name && BigInt(s.endLsn) > BigInt(cur.endLsn))
      .concat(usable.filter((s) => s.level === 1 && s.cumulative && s.parent === l0.name && BigInt(s.endLsn) > BigInt(cur.endLsn)))
      .sort((a, b) => (BigInt(b.endLsn) > BigInt(a.endLsn) ? 1 : -1))[0];
    if (!next) return chain;
    chain.push(next);
  }
}

export async function restoreFromRepo(o: RepoRestoreOptions): Promise<RepoRestoreResult> {
  const repo = await Repo.open(o.repo);
  // Redo from --archive where it holds it, else from the repository's own copy (backup archive, --archive-to).
  const redo = await RedoSources.open(repo, o.archive ? Archive.open(o.archive) : null);
  const to = resolve(o.to);
  if (!o.preview && (existsSync(to) || existsSync(`${to}-wal`) || existsSync(`${to}-journal`)))
    throw new RedoshipError('TARGET_EXISTS', `${to} already exists`, 'restore to a new path, or remove that file first');
  // Redo fetched from the repository is staged beside the target (the same file system, removed at the end).
  const staging = o.preview ? tmpdir() : dirname(to);
  // Sets crosscheck found incomplete (expired) are never planned with.
  const expired = new Set(((await readCatalog(repo))?.sets ?? []).filter((s) => s.status === 'expired').map((s) => s.name));
  const sets = (await repo.sets()).filter((s) => !expired.has(s.name));
  const reach = [redo.lastLsn, ...sets.map((s) => BigInt(s.endLsn))].reduce((a, b) => (a > b ? a : b), 0n);
  let target = o.untilLsn ?? reach;
  if (o.untilTime) {
    const us = BigInt(o.untilTime.getTime()) * 1000n;
    const bySets = sets.filter((s) => new Date(s.endCommitTime).getTime() * 1000 <= Number(us)).map((s) => BigInt(s.endLsn));
    const setsLsn = bySets.reduce((a, b) => (a > b ? a : b), 0n);
    const byRedo = await redo.lsnAtTime(us, setsLsn, staging);
    const t = byRedo !== null && byRedo > setsLsn ? byRedo : setsLsn;
    if (t === 0n) throw new RedoshipError('TARGET_UNREACHABLE', `nothing in the repository or archive is at or before ${o.untilTime.toISOString()}`, 'run `redoship list --repo` to see what it holds');
    if (t < target) target = t;
  }
  if (target > reach)
    throw new RedoshipError('TARGET_UNREACHABLE', `LSN ${target} is past what the repository and archive reach (LSN ${reach})`, `restore to LSN ${reach} or earlier`);
  const chain = planChain(sets, target);
  if (chain.length === 0)
    throw new RedoshipError('TARGET_UNREACHABLE', `the repository has no level 0 backup at or before LSN ${target}`, 'take one with `redoship backup --level 0`, or restore from the archive alone');
  const chainEnd = BigInt(chain[chain.length - 1]!.endLsn);
  const steps: PlanStep[] = chain.map((s) => ({ kind: 'set', name: s.name, level: s.level, endLsn: s.endLsn, pages: s.pages, bytes: s.pieces.reduce((n, p) => n + p.bytes, 0) }));
  let redoSteps: RedoStep[] = [];
  if (target > chainEnd) {
    if (redo.empty)
      throw new RedoshipError('TARGET_UNREACHABLE', `the repository alone reaches LSN ${chainEnd}; LSN ${target} needs archived redo`, 'add --archive with the redo after the last backup set, or copy it into the repository with `redoship backup archive`');
    redoSteps = redo.plan(chainEnd + 1n, target);
    // One plan line per place the redo comes from (a repository step is one segment).
    for (const r of redoSteps) {
      const prev = steps[steps.length - 1];
      if (prev?.kind === 'redo' && prev.source === r.source && BigInt(prev.toLsn) + 1n === r.fromLsn)
        steps[steps.length - 1] = { ...prev, toLsn: String(r.toLsn), records: prev.records + Number(r.toLsn - r.fromLsn + 1n) };
      else steps.push({ kind: 'redo', source: r.source, fromLsn: String(r.fromLsn), toLsn: String(r.toLsn), records: Number(r.toLsn - r.fromLsn + 1n) });
    }
  }
  const plan: RestorePlan = { targetLsn: String(target), steps };
  if (o.preview) return { plan, path: null, pagesWritten: 0 };

  const pageSize = repo.identity.pageSize;
  let pagesWritten = 0;
  await buildFile(to, async (fd) => {
    const pool = CodecPool.shared();
    // The file is written back while later chunks are checked and decoded (buildFile's fsync ends it).
    const wb = new Writeback(fd);
    try {
      for (const set of chain) {
        const before = pagesWritten;
        pagesWritten += await applySet(repo, pool, set, fd, to, wb, o.encryptionSecret ?? null, (pages) =>
          o.onProgress?.({ step: set.name, unit: 'pages', done: pages, total: set.pages, bytes: (before + pages) * pageSize }),
        );
        ftruncateSync(fd, set.sizePages * pageSize);
      }
    } catch (e) {
      await wb.settle().catch(() => undefined);
      throw e;
    } finally {
      await pool.release();
    }
    await wb.settle();
    if (redoSteps.length) {
      const before = pagesWritten;
      await redo.apply(fd, redoSteps, pageSize, chain[chain.length - 1]!.sizePages, staging, (lsn, pages) => {
        pagesWritten = before + pages;
        o.onProgress?.({ step: 'redo', unit: 'records', done: Number(lsn - chainEnd), total: Number(target - chainEnd), bytes: pagesWritten * pageSize });
      });
    }
  });
  return { plan, path: to, pagesWritten };
}

/**
 * Writes one set's pages into the file at fd, checking as it goes: each piece's size against the manifest,
 * its header, each chunk's framing and CRC, each page against the set's page-hash file (itself checked
 * against the manifest's SHA-256), page numbers ascending, the page count. A codec worker reads each chunk
 * into a slab of shared memory (reused once the chunk is done: fresh memory costs a page fault per 4 KiB),
 * checks and decodes it there, and writes its pages, a run of consecutive pages per call (codec-worker.ts);
 * this thread walks the chunk headers and keeps the order and the counts. Returns the pages written.
 *
 * The piece's own SHA-256 is not taken here (validate takes it): every byte of a piece is already covered.
 * The header's fields are checked against their only allowed values, each chunk header's length and count
 * by the framing, and its CRC by the CRC; the CRC covers the stored bytes (in a version 2 piece stored as is,
 * the page numbers: piece.ts), and each decoded image is compared with its recorded hash. A truncated or lengthened piece fails the size check, a
 * lost, repeated or reordered chunk the page order or count. A third pass over the same bytes cost a restore
 * a third of its CPU (piece SHA-256 ~1.2 GB/s here, on two cores that are already busy).
 */
async function applySet(repo: Repo, pool: CodecPool, set: BackupManifest, fd: number, targetPath: string, wb: Writeback, secret: Buffer | null, onPages: (pages: number) => void): Promise<number> {
  const pageSize = set.pageSize;
  const key = set.encryption ? setKey(set.name, set.encryption, secret) : undefined;
  const { hashes, algorithm: pageHashAlgorithm } = await repo.pageHashes(set);
  // Shared memory, so that each chunk's request carries a view of its expected hashes, not a copy of all.
  const expectedAll = Buffer.from(new SharedArrayBuffer(hashes.length));
  hashes.copy(expectedAll);
  // A slab: the chunk's stored bytes; for a compressed or encrypted set, then room for the decoded bytes (a
  // worker decodes into it).
  const maxStored = maxStoredBytes(pageSize);
  const transformed = set.compression.algorithm !== 'none' || set.encryption !== null;
  const rawAt = transformed ? Math.ceil(maxStored / 64) * 64 : -1;
  const slabBytes = transformed ? rawAt + MAX_CHUNK_PAGES * (4 + pageSize) : maxStored;
  const slabs: Buffer[] = [];
  const writeLock = new SharedArrayBuffer(4);
  let queued = 0;
  let i = 0;
  let lastPgno = 0;
  for (const p of set.pieces) {
    const pname = `${set.name}/${p.name}`;
    const piece = await openPiece(repo, `sets/${set.name}/${p.name}`, pname, p.bytes);
    try {
      const head = Buffer.alloc(PIECE_HEADER_BYTES);
      const headBytes = Math.min(head.length, p.bytes);
      piece.readAt(head, 0, headBytes, 0);
      // A damaged flags word would otherwise read as "encrypted" and ask for a key.
      if (headBytes === PIECE_HEADER_BYTES && head.readUInt32BE(12) !== (set.encryption ? 1 : 0))
        throw pieceCorrupt(pname, 12, `its encryption flag is ${head.readUInt32BE(12)}, the manifest says ${set.encryption ? 'encrypted' : 'not encrypted'}`);
      const format = readPieceHeader(pname, head.subarray(0, headBytes), key);
      const { algorithm, encrypted } = format;
      if (algorithm !== set.compression.algorithm) throw pieceCorrupt(pname, 8, `its header says ${algorithm}, the manifest ${set.compression.algorithm}`);
      const chunkHead = Buffer.alloc(CHUNK_HEADER_BYTES);
      type Restored = RestoreResult & { readonly count: number; readonly slab: Buffer };
      // The chunks in order, with piece.ts's bounds (pieceChunks): their headers are read here, the rest by
      // the worker that restores the chunk (or copied into its slab here when the piece is in memory).
      function* tasks(): Generator<() => Promise<Restored>> {
        for (let off = PIECE_HEADER_BYTES; off < p.bytes; ) {
          if (off + CHUNK_HEADER_BYTES > p.bytes) throw pieceCorrupt(pname, off, 'the piece ends inside a chunk header');
          piece.readAt(chunkHead, 0, CHUNK_HEADER_BYTES, off);
          const len = chunkHead.readUInt32BE(0);
          const crc = chunkHead.readUInt32BE(4);
          const count = chunkHead.readUInt32BE(8);
          if (len > maxStored || count === 0 || count > MAX_CHUNK_PAGES) throw pieceCorrupt(pname, off, `chunk claims ${len} bytes, ${count} pages`);
          if (off + CHUNK_HEADER_BYTES + len > p.bytes) throw pieceCorrupt(pname, off, 'the piece ends inside a chunk (truncated)');
          if (queued + count > set.pages) throw pieceCorrupt(set.name, 0, `it holds more pages than the manifest's ${set.pages}`);
          const slab = slabs.pop() ?? Buffer.from(new SharedArrayBuffer(slabBytes));
          if (piece.fd < 0) piece.readAt(slab, 0, len, off + CHUNK_HEADER_BYTES);
          const expected = expectedAll.subarray(queued * PAGE_HASH_BYTES, (queued + count) * PAGE_HASH_BYTES);
          const request = {
            name: pname,
            offset: off,
            slab: slab.buffer as SharedArrayBuffer,
            start: 0,
            length: len,
            readFd: piece.fd,
            readAt: off + CHUNK_HEADER_BYTES,
            count,
            crc,
            pageSize,
            format,
            key: encrypted ? key : undefined,
            rawAt,
            expected,
            pageHashAlgorithm,
            targetFd: fd,
            targetPath,
            writeLock,
          };
          yield async () => ({ ...(await pool.restore(request)), count, slab });
          queued += count;
          off += CHUNK_HEADER_BYTES + len;
        }
      }
      for await (const d of ordered(tasks(), pool.depth)) {
        // Within a chunk the worker checked the order; across chunks it is checked here (after the write:
        // on any error the temporary file is removed).
        if (d.firstPgno <= lastPgno) throw pieceCorrupt(pname, 0, 'page numbers do not ascend');
        lastPgno = d.lastPgno;
        i += d.count;
        wb.wrote(d.count * pageSize);
        slabs.push(d.slab);
        onPages(i);
      }
    } finally {
      piece.close();
    }
  }
  if (i !== set.pages) throw pieceCorrupt(set.name, 0, `it holds ${i} pages, the manifest says ${set.pages}`);
  return i;
}

/**
 * A piece to read from (its length checked against the manifest): readAt(into, at, length, position); fd is
 * its open descriptor when it is a local file (a worker reads from it), -1 when it is held in memory.
 */
interface PieceSource {
  readonly fd: number;
  readonly readAt: (into: Buffer, at: number, length: number, position: number) => void;
  close(): void;
}

/** Opens a piece for applySet: a local piece is read as chunks are needed; from other storage it is fetched whole. */
async function openPiece(repo: Repo, key: string, pname: string, bytes: number): Promise<PieceSource> {
  const size = (n: number) => pieceCorrupt(pname, 0, `it is ${n} bytes, the manifest says ${bytes}`);
  if (!(repo.storage instanceof LocalStorage)) {
    const body = await repo.storage.get(key);
    if (body.length !== bytes) throw size(body.length);
    return { fd: -1, readAt: (into, at, length, position) => void body.copy(into, at, position, position + length), close: () => undefined };
  }
  const path = join(repo.storage.root, ...key.split('/'));
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new RedoshipError('NOT_FOUND', `${key} is not in ${repo.storage.root}`, 'run `redoship crosscheck` to find what the repository lost');
    throw ioError('read', path, e);
  }
  try {
    const n = fstatSync(fd).size;
    if (n !== bytes) throw size(n);
  } catch (e) {
    closeSync(fd);
    throw e instanceof RedoshipError ? e : ioError('read', path, e);
  }
  let open = true;
  return {
    fd,
    readAt: (into, at, length, position) => {
      let done = 0;
      try {
        while (done < length) {
          const got = readSync(fd, into, at + done, length - done, position + done);
          if (got === 0) throw size(position + done);
          done += got;
        }
      } catch (e) {
        throw e instanceof RedoshipError ? e : ioError('read', path, e);
      }
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
