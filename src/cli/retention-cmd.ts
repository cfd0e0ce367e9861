/**
 * `report obsolete` and `delete obsolete` (RMAN REPORT OBSOLETE / DELETE OBSOLETE) over a backup repository,
 * with the policy given on the command line: --redundancy N or --recovery-window D (exactly one). What is
 * obsolete, and why, is decided by src/backup/retention.ts; here the repository is read and, for delete,
 * the obsolete sets are removed: dependants before the sets they depend on, and in each set its manifest
 * FIRST (a set without a manifest is incomplete and ignored by everything, so a set half deleted is never
 * taken for a whole one), then its pieces and page hashes; then the catalog forgets them.
 *
 * The repository's own copy of archived redo (<repo>/archive/segments/, archive-copy.ts) is judged too:
 * retention.ts marks a segment obsolete when all of its redo is at or before the end LSN of the oldest level 0
 * the policy keeps; delete removes those segments after the sets, oldest first, so a deletion stopped half way
 * leaves the newest redo. What remains no longer starts with a base: it serves restores from the repository's
 * backups (which need redo only after a set), not as an archive of its own. The primary's (or a standby's)
 * archive is not part of the repository and is never touched here: it seeds standbys and restores on its own
 * from its base.
 */
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Repo, catalogRemove, listRepoSegments, readCatalog, type BackupManifest, type RepoSegment } from '../backup/index.js';
import { deleteOrder, describePolicy, findObsolete, type RetentionPolicy, type RetentionReport } from '../backup/retention.js';
import { RedoshipError, isRedoshipError } from '../error/index.js';
import { LocalStorage } from '../storage/index.js';
import { formatBytes, parseCount, parseDuration, toJson } from './units.js';

export interface RetentionFlags {
  repo: string;
  redundancy?: string;
  recoveryWindow?: string;
  json?: boolean;
}


export function parsePolicy(f: RetentionFlags): RetentionPolicy {
  if ((f.redundancy === undefined) === (f.recoveryWindow === undefined))
    throw new RedoshipError('USAGE', 'give exactly one retention policy: --redundancy N or --recovery-window D', 'for example --redundancy 2 (keep two level 0 backups) or --recovery-window 7d (restore any point of the last 7 days)');
  if (f.redundancy !== undefined) {
    const n = parseCount(f.redundancy, '--redundancy');
    if (n < 1) throw new RedoshipError('USAGE', `--redundancy ${f.redundancy}: keep at least one level 0`, 'give --redundancy a whole number >= 1');
    return { redundancy: n };
  }
  return { recoveryWindowMs: parseDuration(f.recoveryWindow!, '--recovery-window') };
}

function checkWhat(verb: string, what: string): void {
  if (what !== 'obsolete') throw new RedoshipError('USAGE', `${verb} ${what}: unknown`, `use: redoship ${verb} obsolete --repo DIR (--redundancy N | --recovery-window D)`);
}

async function evaluate(f: RetentionFlags): Promise<{ repo: Repo; report: RetentionReport; segments: ReadonlyMap<string, RepoSegment> }> {
  const policy = parsePolicy(f);
  const repo = await Repo.open(f.repo);
  const sets = await repo.sets();
  let expired: string[] = [];
  try {
    expired = ((await readCatalog(repo))?.sets ?? []).filter((s) => s.status === 'expired').map((s) => s.name);
  } catch (e) {
    if (isRedoshipError(e)) throw e;
    throw new RedoshipError('ARCHIVE_CORRUPT', `the catalog of ${repo.location} is unreadable: ${(e as Error).message}`, 'run `redoship catalog rebuild --repo DIR`, then this again', { cause: e });
  }
  const segments = new Map((await listRepoSegments(repo)).map((g) => [g.name, g]));
  return { repo, segments, report: findObsolete({ sets, segments: [...segments.values()], now: new Date(), policy, expired }) };
}

const bytesOf = (s: BackupManifest) => s.pieces.reduce((n, p) => n + p.bytes, 0);
const levelOf = (s: BackupManifest) => (s.level === 0 ? '0' : s.cumulative ? '1 cum' : '1');

function asJson(repo: Repo, r: RetentionReport, f: RetentionFlags, segments: ReadonlyMap<string, RepoSegment>) {
  return {
    repo: repo.location,
    policy: 'redundancy' in r.policy ? { redundancy: r.policy.redundancy } : { recoveryWindow: f.recoveryWindow, recoveryWindowMs: r.policy.recoveryWindowMs },
    now: r.now.toISOString(),
    windowStart: r.windowStart?.toISOString() ?? null,
    oldestKept: r.oldestKept?.name ?? null,
    redoFloorLsn: r.redoFloorLsn,
    shortfall: r.shortfall,
    obsolete: r.obsolete.map((o) => ({ name: o.set.name, level: o.set.level, cumulative: o.set.cumulative, endLsn: o.set.endLsn, endCommitTime: o.set.endCommitTime, bytes: bytesOf(o.set), reason: o.reason })),
    kept: r.kept.map((s) => s.name),
    redo: {
      segments: segments.size,
      neededAfterLsn: r.redoFloorLsn,
      obsolete: r.obsoleteRedo.map((o) => ({ name: o.segment.name, firstLsn: o.segment.firstLsn, lastLsn: o.segment.lastLsn, bytes: segments.get(o.segment.name)?.bytes ?? 0, reason: o.reason })),
    },
  };
}

function describeReport(r: RetentionReport, segments: ReadonlyMap<string, RepoSegment>): string[] {
  const lines = [`retention policy: ${describePolicy(r.policy)}${r.windowStart ? ` (window start ${r.windowStart.toISOString()})` : ''}`];
  if (r.obsolete.length === 0) lines.push('no obsolete backup sets');
  else {
    lines.push(`obsolete backup sets (${r.obsolete.length}, ${formatBytes(r.obsolete.reduce((n, o) => n + bytesOf(o.set), 0))}):`);
    for (const o of r.obsolete) lines.push(`  ${o.set.name.padEnd(48)} level ${levelOf(o.set).padEnd(6)} LSN ${o.set.endLsn.padEnd(10)} ${formatBytes(bytesOf(o.set)).padStart(10)}  ${o.reason}`);
  }
  lines.push(
    `kept: ${r.kept.length} backup set(s)` +
      (r.oldestKept ? `; the oldest level 0 the policy keeps is ${r.oldestKept.name} (LSN ${r.oldestKept.endLsn}, committed ${r.oldestKept.endCommitTime})` : ''),
  );
  if (r.shortfall) lines.push(`note: ${r.shortfall}`);
  const redoBytes = r.obsoleteRedo.reduce((n, o) => n + (segments.get(o.segment.name)?.bytes ?? 0), 0);
  if (segments.size === 0) lines.push("archived redo: the repository holds none (`redoship backup archive` or `primary --archive-to` copy it there)");
  else if (r.obsoleteRedo.length === 0)
    lines.push(`archived redo: ${segments.size} segment(s), none obsolete${r.redoFloorLsn !== null ? ` (the kept backups need redo from LSN ${r.redoFloorLsn + 1n} on)` : ' (all of it may be needed)'}`);
  else {
    const first = r.obsoleteRedo[0]!.segment;
    const last = r.obsoleteRedo[r.obsoleteRedo.length - 1]!.segment;
    lines.push(
      `obsolete archived redo: ${r.obsoleteRedo.length} of ${segments.size} segment(s), ${formatBytes(redoBytes)}, LSN ${first.firstLsn}..${last.lastLsn}: the kept backups need redo from LSN ${r.redoFloorLsn! + 1n} on`,
    );
  }
  return lines;
}

export async function reportObsoleteCommand(what: string, f: RetentionFlags): Promise<void> {
  checkWhat('report', what);
  const { repo, report, segments } = await evaluate(f);
  if (f.json) process.stdout.write(toJson(asJson(repo, report, f, segments)) + '\n');
  else process.stdout.write(describeReport(report, segments).join('\n') + '\n');
}

/** Removes one set: its manifest first, then everything else under it. */
async function deleteSet(repo: Repo, s: BackupManifest): Promise<void> {
  const prefix = `sets/${s.name}/`;
  await repo.storage.remove([`${prefix}manifest.json`]);
  const rest: string[] = [];
  for await (const o of repo.storage.list(prefix)) rest.push(o.key);
  await repo.storage.remove(rest);
  // A local directory keeps the set's (now empty) directory; an object store has none.
  if (repo.storage instanceof LocalStorage) await rmdir(join(repo.storage.root, 'sets', s.name)).catch(() => undefined);
}

/**
 * Deletes the report's obsolete sets (dependants first; each manifest first; the catalog forgets them), then
 * its obsolete redo segments, oldest first. Returns what was deleted.
 */
export async function deleteObsolete(repo: Repo, report: RetentionReport, onDeleted?: (name: string) => void): Promise<string[]> {
  const deleted: string[] = [];
  try {
    for (const o of deleteOrder(report)) {
      await deleteSet(repo, o.set);
      deleted.push(o.set.name);
      onDeleted?.(o.set.name);
    }
  } finally {
    if (deleted.length) await catalogRemove(repo, deleted);
  }
  for (const o of report.obsoleteRedo) {
    await repo.storage.remove([`archive/segments/${o.segment.name}`]);
    deleted.push(o.segment.name);
    onDeleted?.(o.segment.name);
  }
  return deleted;
}

export async function deleteObsoleteCommand(what: string, f: RetentionFlags): Promise<void> {
  checkWhat('delete', what);
  const { repo, report, segments } = await evaluate(f);
  const deleted = await deleteObsolete(repo, report, f.json ? undefined : (name) => process.stderr.write(`deleted ${name}\n`));
  const freed = report.obsolete.reduce((n, o) => n + bytesOf(o.set), 0) + report.obsoleteRedo.reduce((n, o) => n + (segments.get(o.segment.name)?.bytes ?? 0), 0);
  if (f.json) process.stdout.write(toJson({ ...asJson(repo, report, f, segments), deleted }) + '\n');
  else
    process.stdout.write(
      [...describeReport(report, segments), `deleted ${report.obsolete.length} backup set(s) and ${report.obsoleteRedo.length} redo segment(s), ${formatBytes(freed)}`].join('\n') + '\n',
    );
}
