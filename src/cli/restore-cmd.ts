import { restoreFromArchive } from '../backup/index.js';
import { formatBytes, formatTimeUs, parseLsn, parseTime, toJson } from './units.js';

export function restoreCommand(f: { archive: string; to: string; untilLsn?: string; untilTime?: string; json?: boolean }): void {
  const tty = process.stderr.isTTY && !f.json;
  let lastShown = 0;
  const r = restoreFromArchive({
    archive: f.archive,
    to: f.to,
    ...(f.untilLsn !== undefined ? { untilLsn: parseLsn(f.untilLsn, '--until-lsn') } : {}),
    ...(f.untilTime !== undefined ? { untilTime: parseTime(f.untilTime, '--until-time') } : {}),
    onProgress: tty
      ? (p) => {
          const now = Date.now();
          if (now - lastShown < 200) return;
          lastShown = now;
          process.stderr.write(`\rrestoring: LSN ${p.lsn} of ${p.targetLsn}, ${p.pages} pages written`);
        }
      : undefined,
  });
  if (tty && lastShown) process.stderr.write('\n');
  if (f.json) process.stdout.write(toJson({ ...r, commitTime: formatTimeUs(r.commitTimeUs) }) + '\n');
  else
    process.stdout.write(
      `restored ${r.path}: LSN ${r.lsn} (committed ${formatTimeUs(r.commitTimeUs)}), ${r.sizePages} pages (${formatBytes(r.sizePages * r.pageSize)}), from the base at LSN ${r.baseLsn} + ${r.records - 1} records\n`,
    );
}
