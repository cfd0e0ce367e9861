/**
 * validate: read every piece of every backup set and check everything that can be checked without the
 * database: the piece's size and SHA-256 against the manifest, every chunk's CRC and framing, every page's
 * hash against the set's page-hash file, the page count. With restoreTest, also restore the newest chain to a
 * temporary file and check it with SQLite's own PRAGMA integrity_check and page by page against the hashes
 * the sets recorded (CONCEPTS.md: Verification: a backup never restored is not known to be good), and, when
 * the repository holds archived redo past that chain, restore through all of it as well.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedoshipError, isRedoshipError } from '../error/index.js';
import { PAGE_HASH_BYTES, pageHash, type PageHashAlgorithm } from '../sqlite/index.js';
import { decodePiece } from './piece.js';
import { Repo, type BackupManifest, type SetPageHashes } from './repo.js';
import { planChain, restoreFromRepo, type RestoreProgress } from './restore.js';
import { setKey } from './key.js';
import { RedoSources } from './repo-redo.js';

export interface SetValidation {
  readonly name: string;
  readonly ok: boolean;
  readonly pages: number;
  readonly bytes: number;
  readonly problems: readonly string[];
}

export interface Validation {
  readonly sets: readonly SetValidation[];
  readonly restoreTest: {
    readonly lsn: string;
    readonly integrity: string;
    readonly pagesChecked: number;
    readonly mismatches: readonly number[];
    /** The end of the repository's own archived redo when it reaches past the chain, restored to with it; else null. */
    readonly redoToLsn: string | null;
    /** Why the restore through the repository's redo failed, or null. */
    readonly redoProblem: string | null;
  } | null;
  readonly ok: boolean;
}

async function validateSet(repo: Repo, m: BackupManifest, secret: Buffer | null): Promise<SetValidation> {
  const problems: string[] = [];
  let key: Buffer | undefined;
  try {
    key = m.encryption ? setKey(m.name, m.encryption, secret) : undefined;
  } catch (e) {
    return { name: m.name, ok: false, pages: 0, bytes: 0, problems: [(e as Error).message] };
  }
  let pages = 0;
  let bytes = 0;
  // Without good page hashes the images cannot be checked (the set is damaged anyway): the pieces are then
  // checked against their SHA-256 only.
  let hashes: SetPageHashes | null = null;
  try {
    hashes = await repo.pageHashes(m);
  } catch (e) {
    problems.push(isRedoshipError(e) ? e.message : `${m.pageHashes.name}: ${(e as Error).message}`);
  }
  let at = 0;
  for (const p of m.pieces) {
    const from = at;
    at += p.pages;
    let body: Buffer;
    try {
      body = await repo.storage.get(`sets/${m.name}/${p.name}`);
    } catch (e) {
      problems.push(`${p.name}: ${(e as Error).message}`);
      continue;
    }
    bytes += body.length;
    if (body.length !== p.bytes) problems.push(`${p.name}: ${body.length} bytes, the manifest says ${p.bytes} (truncated?)`);
    else if (createHash('sha256').update(body).digest('hex') !== p.sha256) problems.push(`${p.name}: SHA-256 mismatch`);
    if (!hashes) continue;
    try {
      const got = decodePiece(`${m.name}/${p.name}`, body, m.pageSize, key, hashes.hashes.subarray(from * PAGE_HASH_BYTES, at * PAGE_HASH_BYTES), hashes.algorithm).length;
      if (got !== p.pages) problems.push(`${p.name}: holds ${got} pages, the manifest says ${p.pages}`);
      pages += got;
    } catch (e) {
      problems.push(isRedoshipError(e) ? e.message : String(e));
    }
  }
  if (problems.length === 0 && pages !== m.pages) problems.push(`holds ${pages} pages, the manifest says ${m.pages}`);
  return { name: m.name, ok: problems.length === 0, pages, bytes, problems };
}

export async function validateRepo(location: string, o: { restoreTest: boolean; encryptionSecret?: Buffer; onRestoreProgress?: (p: RestoreProgress) => void }): Promise<Validation> {
  const repo = await Repo.open(location);
  const sets = await repo.sets();
  const results: SetValidation[] = [];
  for (const m of sets) results.push(await validateSet(repo, m, o.encryptionSecret ?? null));
  let restoreTest: Validation['restoreTest'] = null;
  if (o.restoreTest && sets.length > 0) {
    const good = sets.filter((s) => results.find((r) => r.name === s.name)?.ok);
    const latest = good.reduce((a, b) => (BigInt(b.endLsn) > BigInt(a) ? BigInt(b.endLsn) : a), 0n);
    const chain = planChain(good, latest);
    if (chain.length === 0) throw new RedoshipError('TARGET_UNREACHABLE', 'no intact level 0 set to restore-test', 'take a level 0 backup');
    const dir = mkdtempSync(join(tmpdir(), 'redoship-restore-test-'));
    try {
      const out = join(dir, 'test.db');
      await restoreFromRepo({
        repo: location,
        to: out,
        untilLsn: BigInt(chain[chain.length - 1]!.endLsn),
        ...(o.encryptionSecret ? { encryptionSecret: o.encryptionSecret } : {}),
        ...(o.onRestoreProgress ? { onProgress: o.onRestoreProgress } : {}),
      });
      // Expected page hashes: the level 0's, overlaid by each level 1's, cut to the final size.
      const expected = new Map<number, { hash: Buffer; algorithm: PageHashAlgorithm }>();
      for (const s of chain) {
        const { hashes, algorithm } = await repo.pageHashes(s);
        let i = 0;
        for (const p of s.pieces)
          for (const [pgno] of decodePiece(`${s.name}/${p.name}`, await repo.storage.get(`sets/${s.name}/${p.name}`), s.pageSize, s.encryption ? setKey(s.name, s.encryption, o.encryptionSecret ?? null) : undefined, hashes.subarray(i * PAGE_HASH_BYTES), algorithm))
            expected.set(pgno, { hash: hashes.subarray(i * PAGE_HASH_BYTES, ++i * PAGE_HASH_BYTES), algorithm });
      }
      const size = chain[chain.length - 1]!.sizePages;
      const ps = chain[0]!.pageSize;
      const file = readFileSync(out);
      const mismatches: number[] = [];
      for (let pgno = 1; pgno <= size; pgno++) {
        const want = expected.get(pgno);
        if (!want || !pageHash(pgno, file.subarray((pgno - 1) * ps, pgno * ps), want.algorithm).equals(want.hash)) mismatches.push(pgno);
      }
      const db = new Database(out);
      let integrity: string;
      try {
        integrity = (db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('; ');
      } finally {
        db.close();
      }
      // The repository's own redo after the chain (backup archive, --archive-to) is tested too: a restore
      // through all of it (integrity_check is part of every restore).
      const redo = await RedoSources.open(repo, null);
      let redoToLsn: string | null = null;
      let redoProblem: string | null = null;
      if (redo.lastLsn > BigInt(chain[chain.length - 1]!.endLsn)) {
        try {
          await restoreFromRepo({
            repo: location,
            to: join(dir, 'test-redo.db'),
            untilLsn: redo.lastLsn,
            ...(o.encryptionSecret ? { encryptionSecret: o.encryptionSecret } : {}),
            ...(o.onRestoreProgress ? { onProgress: o.onRestoreProgress } : {}),
          });
          redoToLsn = String(redo.lastLsn);
        } catch (e) {
          if (!isRedoshipError(e)) throw e;
          redoProblem = `${e.message} (${e.hint})`;
        }
      }
      restoreTest = { lsn: chain[chain.length - 1]!.endLsn, integrity, pagesChecked: size, mismatches, redoToLsn, redoProblem };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ok = results.every((r) => r.ok) && (restoreTest === null || (restoreTest.integrity === 'ok' && restoreTest.mismatches.length === 0 && restoreTest.redoProblem === null));
  return { sets: results, restoreTest, ok };
}

