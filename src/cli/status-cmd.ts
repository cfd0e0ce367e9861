import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { STATUS_FILE, type PrimaryStatus } from '../primary/index.js';
import { Archive } from '../redo/index.js';
import { formatAgo, formatBytes, formatTimeUs, toJson } from './units.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function statusCommand(f: { archive: string; json?: boolean }): void {
  const a = Archive.open(f.archive);
  const tail = a.tail();
  const segs = a.segments();
  const statusPath = join(a.dir, STATUS_FILE);
  let primary: PrimaryStatus | null = null;
  if (existsSync(statusPath)) {
    try {
      primary = JSON.parse(readFileSync(statusPath, 'utf8')) as PrimaryStatus;
    } catch {
      primary = null; // being replaced right now
    }
  }
  const running = primary !== null && alive(primary.pid);
  const nowMs = Date.now();
  const lastCommitMs = tail ? Number(tail.commitTimeUs / 1000n) : null;
  const lagFrames = running && primary ? Math.max(0, primary.stats.lastMxFrame - primary.stats.capturedFrame) : null;
  const out = {
    archive: a.dir,
    database: a.identity.databasePath,
    databaseId: a.identity.databaseId,
    primary: running && primary ? { pid: primary.pid, startedAt: primary.startedAt, updatedAt: primary.updatedAt, sqliteVersion: primary.sqliteVersion } : null,
    lastLsn: tail?.lsn ?? null,
    lastCommitTime: tail ? formatTimeUs(tail.commitTimeUs) : null,
    lastCommitAgeMs: lastCommitMs === null ? null : nowMs - lastCommitMs,
    walBytes: running && primary ? primary.walBytes : null,
    walFrames: running && primary ? primary.stats.lastMxFrame : null,
    captureLagFrames: lagFrames,
    checkpoints: running && primary ? primary.stats.checkpoints : null,
    checkpointsBusy: running && primary ? primary.stats.checkpointsBusy : null,
    segments: segs.length,
    archiveBytes: segs.reduce((n, s) => n + s.bytes, 0),
  };
  if (f.json) {
    process.stdout.write(toJson(out) + '\n');
    return;
  }
  const lines = [
    `archive     ${out.archive}`,
    `database    ${out.database}`,
    `primary     ${out.primary ? `running, pid ${out.primary.pid}, since ${out.primary.startedAt} (SQLite ${out.primary.sqliteVersion})` : 'not running'}`,
    `last LSN    ${out.lastLsn ?? '-'}`,
    `last commit ${out.lastCommitTime ?? '-'}${out.lastCommitAgeMs !== null ? ` (${formatAgo(out.lastCommitAgeMs)} ago)` : ''}`,
    `WAL         ${out.walBytes !== null ? `${formatBytes(out.walBytes)}, ${out.walFrames} frames published` : '-'}`,
    `capture lag ${lagFrames !== null ? `${lagFrames} frames` : '-'}`,
    `checkpoints ${out.checkpoints !== null ? `${out.checkpoints} done, ${out.checkpointsBusy} found the write lock busy` : '-'}`,
    `archive     ${out.segments} segments, ${formatBytes(out.archiveBytes)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
