/**
 * Archived redo in a backup repository: <repo>/archive/ is laid out as an archive directory (archive.json and
 * segments/), holding copies of sealed segments, so a repository can restore on its own (a level 0, its
 * level 1s, then this redo) and a DR bucket always holds recent redo.
 *
 * A segment is copied whole (the storage's put is whole-or-nothing), verified before it is copied (every
 * record read back from the source), and never overwritten with different bytes: sealed segments are
 * immutable, so a copy that exists at the same size is the same segment.
 */
import { createHash } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { RedoshipError } from '../error/index.js';
import { Archive, fsyncDir, type SegmentInfo } from '../redo/index.js';
import type { Repo } from './repo.js';

const IDENTITY = 'archive/archive.json';

async function ensureArchiveIdentity(repo: Repo, archive: Archive): Promise<void> {
  try {
    const id = JSON.parse((await repo.storage.get(IDENTITY)).toString('utf8')) as { databaseId: string };
    if (id.databaseId !== archive.identity.databaseId)
      throw new RedoshipError('WRONG_DATABASE', `the repository's archive holds redo of database ${id.databaseId}; this archive is ${archive.identity.databaseId}`, 'give each database its own repository');
  } catch (e) {
    if ((e as { code?: string }).code !== 'NOT_FOUND') throw e;
    await repo.storage.put(IDENTITY, Buffer.from(JSON.stringify(archive.identity, null, 2) + '\n'));
  }
}

/** Copies one sealed segment file into the repository (no-op when an equal copy is there). */
export async function copySegment(repo: Repo, archive: Archive, path: string): Promise<boolean> {
  await ensureArchiveIdentity(repo, archive);
  const name = basename(path);
  const key = `archive/segments/${name}`;
  const body = readFileSync(path);
  for await (const o of repo.storage.list(key)) if (o.key === key && o.size === body.length) return false;
  await repo.storage.put(key, body);
  return true;
}

export interface ArchiveCopyResult {
  readonly copied: string[];
  readonly present: string[];
  readonly deleted: string[];
  readonly sha256: Record<string, string>;
}

/**
 * Copies every sealed, undamaged segment of the archive into the repository; with deleteInput, removes the
 * copied ones that lie wholly before the archive's latest base.
 */
export async function copyArchive(repo: Repo, archive: Archive, o: { deleteInput: boolean }): Promise<ArchiveCopyResult> {
  if (archive.identity.databaseId !== repo.identity.databaseId)
    throw new RedoshipError('WRONG_DATABASE', `the archive ${archive.dir} is of database ${archive.identity.databaseId}; the repository is of ${repo.identity.databaseId}`, 'give the archive of the same database');
  const report = archive.verify();
  const damaged = new Set(report.segments.filter((s) => s.damage).map((s) => s.name));
  if (damaged.size) throw new RedoshipError('ARCHIVE_CORRUPT', `the archive has damaged segments: ${[...damaged].join(', ')}`, 'run `redoship archive verify`; copy them from another copy of the archive first');
  const result: ArchiveCopyResult = { copied: [], present: [], deleted: [], sha256: {} };
  const sealed: SegmentInfo[] = archive.segments().filter((s) => s.sealed);
  for (const s of sealed) {
    (await copySegment(repo, archive, s.path)) ? result.copied.push(s.name) : result.present.push(s.name);
    result.sha256[s.name] = createHash('sha256').update(readFileSync(s.path)).digest('hex');
  }
  if (o.deleteInput) {
    // The local archive keeps its latest base and everything after it: capture's resync and standbys
    // starting afresh need them. What is older is now in the repository.
    const tail = archive.tail();
    const base = tail ? archive.latestBaseAtOrBefore(tail.lsn) : null;
    for (const s of sealed.filter((x) => base !== null && x.lastLsn < base)) {
      unlinkSync(s.path);
      result.deleted.push(s.name);
    }
    if (sealed.length) fsyncDir(archive.segmentsDir);
  }
  return result;
}
