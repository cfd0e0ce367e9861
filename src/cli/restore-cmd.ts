import { readKeyFile, restoreFromArchive, restoreFromRepo } from '../backup/index.js';
import { RedoshipError } from '../error/index.js';
import { formatBytes, formatTimeUs, parseLsn, parseTime, toJson } from './units.js';

export async function restoreCommand(f: { archive?: string; repo?: string; to: string; untilLsn?: string; untilTime?: string; json?: boolean; preview?: boolean; encryptKeyFile?: string }): Promise<void> {
  if (f.repo) return restoreRepo(f);
  if (!f.archive) throw new RedoshipError('USAGE', 'restore needs --archive or --repo', 'example: redoship restore --archive ./arch --to out.db');
  if (f.preview) throw new RedoshipError('USAGE', '--preview goes with --repo', 'an archive restore is always base + redo');
  const archive = f.archive;
  const tty = process.stderr.isTTY && !f.json;
  let lastShown = 0;
  const r = restoreFromArchive({
    archive,
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

async function restoreRepo(f: { archive?: string; repo?: string; to: string; untilLsn?: string; untilTime?: string; json?: boolean; preview?: boolean; encryptKeyFile?: string }): Promise<void> {
  const tty = process.stderr.isTTY && !f.json;
  const r = await restoreFromRepo({
    repo: f.repo!,
    ...(f.archive ? { archive: f.archive } : {}),
    to: f.to,
    ...(f.untilLsn !== undefined ? { untilLsn: parseLsn(f.untilLsn, '--until-lsn') } : {}),
    ...(f.untilTime !== undefined ? { untilTime: parseTime(f.untilTime, '--until-time') } : {}),
    preview: !!f.preview,
    ...(f.encryptKeyFile ? { encryptionSecret: readKeyFile(f.encryptKeyFile) } : {}),
    ...(tty ? { onProgress: (p: { step: string; pages: number }) => process.stderr.write(`\rrestoring: ${p.step}, ${p.pages} pages written`) } : {}),
  });
  if (tty && !f.preview) process.stderr.write('\n');
  if (f.json) {
    process.stdout.write(toJson(r) + '\n');
    return;
  }
  const lines = [`${f.preview ? 'plan' : 'restored'} to LSN ${r.plan.targetLsn}${r.path ? ` at ${r.path}` : ''}:`];
  for (const s of r.plan.steps)
    lines.push(s.kind === 'set' ? `  backup set ${s.name} (level ${s.level}, LSN ${s.endLsn}): ${s.pages} pages, ${formatBytes(s.bytes)}` : `  archived redo LSN ${s.fromLsn}..${s.toLsn} (${s.records} records)`);
  process.stdout.write(lines.join('\n') + '\n');
}
