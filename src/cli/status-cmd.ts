import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { STATUS_FILE, type PrimaryStatus } from '../primary/index.js';
import { Archive, currentIncarnation, describeIncarnation, isProcessAlive, readFence } from '../redo/index.js';
import { STANDBY_STATUS_FILE, type StandbyStatus } from '../standby/index.js';
import { formatAgo, formatBytes, formatTimeUs, toJson } from './units.js';

export function statusCommand(f: { archive: string; json?: boolean }): void {
  const a = Archive.open(f.archive);
  // A promoted standby or a demoted primary leaves both status files: the one whose process runs wins,
  // else the newer.
  const read = (name: string): { pid: number; updatedAt: string } | null => {
    try {
      return JSON.parse(readFileSync(join(a.dir, name), 'utf8')) as { pid: number; updatedAt: string };
    } catch {
      return null;
    }
  };
  const sb = read(STANDBY_STATUS_FILE);
  const pr = read(STATUS_FILE);
  const rank = (x: { pid: number; updatedAt: string } | null) => (x ? (isProcessAlive(x.pid) ? 2e13 : 0) + new Date(x.updatedAt).getTime() : -1);
  if (sb && rank(sb) > rank(pr)) return standbyStatus(a, f.json === true);
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
  const running = primary !== null && isProcessAlive(primary.pid);
  const nowMs = Date.now();
  const lastCommitMs = tail ? Number(tail.commitTimeUs / 1000n) : null;
  const lagFrames = running && primary ? Math.max(0, primary.stats.lastMxFrame - primary.stats.capturedFrame) : null;
  const out = {
    archive: a.dir,
    database: a.identity.databasePath,
    databaseId: a.identity.databaseId,
    incarnation: currentIncarnation(a.history()).incarnation,
    fenced: readFence(a.dir),
    primary: running && primary ? { pid: primary.pid, startedAt: primary.startedAt, updatedAt: primary.updatedAt, sqliteVersion: primary.sqliteVersion } : null,
    lastLsn: tail?.lsn ?? null,
    lastCommitTime: tail ? formatTimeUs(tail.commitTimeUs) : null,
    lastCommitAgeMs: lastCommitMs === null ? null : nowMs - lastCommitMs,
    walBytes: running && primary ? primary.walBytes : null,
    walFrames: running && primary ? primary.stats.lastMxFrame : null,
    captureLagFrames: lagFrames,
    checkpoints: running && primary ? primary.stats.checkpoints : null,
    checkpointsBusy: running && primary ? primary.stats.checkpointsBusy : null,
    listen: running && primary ? primary.listen : null,
    standbys: running && primary ? primary.standbys : [],
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
    `incarnation ${describeIncarnation(currentIncarnation(a.history()))}`,
    ...(out.fenced ? [`FENCED      ${out.fenced.why}`] : []),
    `last LSN    ${out.lastLsn ?? '-'}`,
    `last commit ${out.lastCommitTime ?? '-'}${out.lastCommitAgeMs !== null ? ` (${formatAgo(out.lastCommitAgeMs)} ago)` : ''}`,
    `WAL         ${out.walBytes !== null ? `${formatBytes(out.walBytes)}, ${out.walFrames} frames published` : '-'}`,
    `capture lag ${lagFrames !== null ? `${lagFrames} frames` : '-'}`,
    `checkpoints ${out.checkpoints !== null ? `${out.checkpoints} done, ${out.checkpointsBusy} found the write lock busy` : '-'}`,
    `archive     ${out.segments} segments, ${formatBytes(out.archiveBytes)}`,
    ...(out.listen ? [`serving     ${out.listen}, ${out.standbys.length} standby(s) connected`] : []),
    ...out.standbys.map(
      (s) => `  ${s.name} (${s.remote}): durable LSN ${s.durableLsn}, applied ${s.appliedLsn}, lag ${s.lagRecords} records${s.lastAckAgeMs !== null ? `, last ack ${formatAgo(s.lastAckAgeMs)} ago` : ''}`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function standbyStatus(a: Archive, json: boolean): void {
  let st: StandbyStatus | null = null;
  try {
    st = JSON.parse(readFileSync(join(a.dir, STANDBY_STATUS_FILE), 'utf8')) as StandbyStatus;
  } catch {
    st = null;
  }
  const running = st !== null && isProcessAlive(st.pid) && Date.now() - new Date(st.updatedAt).getTime() < 5000;
  const tail = a.tail();
  const out = {
    role: 'standby',
    archive: a.dir,
    databaseId: a.identity.databaseId,
    running,
    db: st?.db ?? null,
    from: st?.from ?? null,
    connected: running ? st!.connected : false,
    lastError: st?.lastError ?? null,
    receivedLsn: tail?.lsn ?? null,
    confirmedLsn: st?.confirmedLsn ?? null,
    primaryLastLsn: st?.primaryLastLsn ?? null,
    receiveLagRecords: running ? st!.receiveLagRecords : null,
    appliedLsn: st?.appliedLsn ?? null,
    appliedCommitTime: st?.appliedCommitTime ?? null,
    applyLagRecords: st?.applyLagRecords ?? null,
    applyLagMs: running ? st!.applyLagMs : null,
    delayMs: st?.delayMs ?? null,
    paused: st?.paused ?? null,
    untilLsn: st?.untilLsn ?? null,
    untilTime: st?.untilTime ?? null,
    nextApplyLsn: st?.nextApplyLsn ?? null,
    nextApplyAt: st?.nextApplyAt ?? null,
    clockSkewMs: st?.clockSkewMs ?? null,
    standbys: st?.standbys ?? [],
  };
  if (json) {
    process.stdout.write(toJson(out) + '\n');
    return;
  }
  const lines = [
    `standby     ${out.archive}${running ? `, running (pid ${st!.pid})` : ', not running'}`,
    `database    ${out.db ?? '(archive only)'}`,
    `primary     ${out.from ?? '-'}: ${out.connected ? 'connected' : `not connected${out.lastError ? ` (${out.lastError})` : ''}`}`,
    `received    LSN ${out.receivedLsn ?? '-'} of the primary's ${out.primaryLastLsn ?? '-'} (${out.receiveLagRecords ?? '-'} behind)${out.confirmedLsn !== null && out.receivedLsn !== null && out.confirmedLsn !== String(out.receivedLsn) ? `; confirmed durable by the primary up to ${out.confirmedLsn}` : ''}`,
    `applied     LSN ${out.appliedLsn ?? '-'}${out.appliedCommitTime ? `, committed ${out.appliedCommitTime}` : ''} (${out.applyLagRecords ?? '-'} records behind${out.applyLagMs !== null ? `, ${formatAgo(out.applyLagMs)} old` : ''})`,
    `delay       ${out.delayMs !== null ? formatAgo(out.delayMs) : '-'}${out.paused ? ', PAUSED' : ''}${out.untilLsn ? `, applying until LSN ${out.untilLsn}` : ''}${out.untilTime ? `, applying until ${out.untilTime}` : ''}`,
    `next apply  ${out.nextApplyLsn ? `LSN ${out.nextApplyLsn} at ${out.nextApplyAt}` : '-'}`,
    `clock skew  ${out.clockSkewMs !== null ? `${out.clockSkewMs.toFixed(1)} ms (primary minus standby, includes network delay)` : '-'}`,
    ...out.standbys.map((s) => `  cascade: ${s.name} (${s.remote}): durable LSN ${s.durableLsn}, lag ${s.lagRecords} records`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
