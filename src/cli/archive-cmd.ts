import { Archive, type SegmentReport } from '../redo/index.js';
import { formatBytes, formatTimeUs, toJson } from './units.js';

function row(s: SegmentReport): string {
  const range = s.records > 0 ? `${s.firstLsn}..${s.lastLsn}` : '(empty)';
  const marks = [
    s.sealed ? 'sealed' : 'open',
    ...s.bases.map((l) => `base@${l}`),
    ...s.breaks.map((r) => `BREAK@${r.lsn}`),
    ...(s.damage ? ['DAMAGED'] : []),
    ...(s.tornTail ? ['torn-tail'] : []),
  ].join(' ');
  return `${s.name.padEnd(52)} ${range.padEnd(22)} ${String(s.records).padStart(8)} ${formatBytes(s.bytes).padStart(10)}  ${formatTimeUs(s.firstTimeUs)}  ${formatTimeUs(s.lastTimeUs)}  ${marks}`;
}

export function archiveList(f: { archive: string; json?: boolean }): void {
  const a = Archive.open(f.archive);
  const rep = a.verify();
  if (f.json) {
    process.stdout.write(
      toJson({
        archive: a.dir,
        identity: a.identity,
        firstLsn: rep.firstLsn,
        lastLsn: rep.lastLsn,
        segments: rep.segments.map((s) => ({
          name: s.name,
          incarnation: s.incarnation,
          firstLsn: s.firstLsn,
          lastLsn: s.lastLsn,
          records: s.records,
          bytes: s.bytes,
          sealed: s.sealed,
          firstTime: s.firstTimeUs === null ? null : formatTimeUs(s.firstTimeUs),
          lastTime: s.lastTimeUs === null ? null : formatTimeUs(s.lastTimeUs),
          bases: s.bases,
          breaks: s.breaks,
          damage: s.damage,
          tornTail: s.tornTail,
        })),
        problems: rep.problems,
      }) + '\n',
    );
    return;
  }
  const out: string[] = [];
  out.push(`archive ${a.dir}  database ${a.identity.databasePath}  id ${a.identity.databaseId}  page size ${a.identity.pageSize}`);
  out.push(`${'segment'.padEnd(52)} ${'LSNs'.padEnd(22)} ${'records'.padStart(8)} ${'size'.padStart(10)}  ${'first commit'.padEnd(24)}  ${'last commit'.padEnd(24)}  notes`);
  for (const s of rep.segments) out.push(row(s));
  const total = rep.segments.reduce((n, s) => n + s.bytes, 0);
  out.push(`${rep.segments.length} segments, LSN ${rep.firstLsn ?? '-'}..${rep.lastLsn ?? '-'}, ${formatBytes(total)}`);
  for (const s of rep.segments) for (const r of s.breaks) out.push(`break at LSN ${r.lsn}: ${r.note}`);
  for (const p of rep.problems) out.push(`PROBLEM: ${p}`);
  process.stdout.write(out.join('\n') + '\n');
}

export function archiveVerify(f: { archive: string; json?: boolean }): void {
  const a = Archive.open(f.archive);
  const rep = a.verify();
  const records = rep.segments.reduce((n, s) => n + s.records, 0);
  if (f.json) {
    process.stdout.write(toJson({ ok: rep.problems.length === 0, segments: rep.segments.length, records, firstLsn: rep.firstLsn, lastLsn: rep.lastLsn, problems: rep.problems, tornTails: rep.segments.filter((s) => s.tornTail).map((s) => `${s.name}: ${s.tornTail}`) }) + '\n');
  } else {
    for (const s of rep.segments) if (s.tornTail) process.stdout.write(`note: ${s.name} ends in a torn tail (${s.tornTail}); the primary cuts it on its next start\n`);
    if (rep.problems.length === 0)
      process.stdout.write(`ok: ${rep.segments.length} segments, ${records} records, LSN ${rep.firstLsn ?? '-'}..${rep.lastLsn ?? '-'}, every record checked\n`);
    else {
      for (const p of rep.problems) process.stdout.write(`DAMAGE: ${p}\n`);
      process.stdout.write(`${rep.problems.length} problem(s) in ${a.dir}\n  hint: restore from another copy of the archive (a standby, a backup repository); restore can reach the LSN before the first damage\n`);
    }
  }
  if (rep.problems.length > 0) process.exitCode = 22;
}
