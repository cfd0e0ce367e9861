import { readKeyFile, restoreFromArchive, restoreFromRepo } from '../backup/index.js';
import { RedoshipError } from '../error/index.js';
import { Archive } from '../redo/index.js';
import { formatBytes, formatTimeUs, parseLsn, parseTime, toJson } from './units.js';
import { progressLine } from './progress.js';

interface RestoreFlags {
  archive?: string;
  repo?: string;
  to: string;
  untilLsn?: string;
  untilTime?: string;
  json?: boolean;
  quiet?: boolean;
  preview?: boolean;
  encryptKeyFile?: string;
}

export async function restoreCommand(f: RestoreFlags): Promise<void> {
  if (f.repo) return restoreRepo(f);
  if (!f.archive) throw new RedoshipError('USAGE', 'restore needs --archive or --repo', 'example: redoship restore --archive ./arch --to out.db');
  if (f.preview) throw new RedoshipError('USAGE', '--preview goes with --repo', 'an archive restore is always base + redo');
  const archive = Archive.open(f.archive);
  const pageSize = archive.identity.pageSize;
  const progress = progressLine('restore', 'records', { quiet: !!(f.json || f.quiet) });
  let base: bigint | null = null;
  let r;
  try {
    r = restoreFromArchive({
      archive,
      to: f.to,
      ...(f.untilLsn !== undefined ? { untilLsn: parseLsn(f.untilLsn, '--until-lsn') } : {}),
      ...(f.untilTime !== undefined ? { untilTime: parseTime(f.untilTime, '--until-time') } : {}),
      onProgress: (p) => {
        base ??= p.lsn;
        progress.update({ done: Number(p.lsn - base + 1n), total: Number(p.targetLsn - base + 1n), bytes: p.pages * pageSize, unit: 'records' });
      },
    });
  } finally {
    progress.done();
  }
  if (f.json) process.stdout.write(toJson({ ...r, commitTime: formatTimeUs(r.commitTimeUs) }) + '\n');
  else
    process.stdout.write(
      `restored ${r.path}: LSN ${r.lsn} (committed ${formatTimeUs(r.commitTimeUs)}), ${r.sizePages} pages (${formatBytes(r.sizePages * r.pageSize)}), from the base at LSN ${r.baseLsn} + ${r.records - 1} records\n`,
    );
}

async function restoreRepo(f: RestoreFlags): Promise<void> {
  const progress = progressLine('restore', 'pages', { quiet: !!(f.json || f.quiet || f.preview) });
  let r;
  try {
    r = await restoreFromRepo({
      repo: f.repo!,
      ...(f.archive ? { archive: f.archive } : {}),
      to: f.to,
      ...(f.untilLsn !== undefined ? { untilLsn: parseLsn(f.untilLsn, '--until-lsn') } : {}),
      ...(f.untilTime !== undefined ? { untilTime: parseTime(f.untilTime, '--until-time') } : {}),
      preview: !!f.preview,
      ...(f.encryptKeyFile ? { encryptionSecret: readKeyFile(f.encryptKeyFile) } : {}),
      onProgress: (p) => {
        progress.step(p.step);
        progress.update(p);
      },
    });
  } finally {
    progress.done();
  }
  if (f.json) {
    process.stdout.write(toJson(r) + '\n');
    return;
  }
  const lines = [`${f.preview ? 'plan' : 'restored'} to LSN ${r.plan.targetLsn}${r.path ? ` at ${r.path}` : ''}:`];
  for (const s of r.plan.steps)
    lines.push(s.kind === 'set' ? `  backup set ${s.name} (level ${s.level}, LSN ${s.endLsn}): ${s.pages} pages, ${formatBytes(s.bytes)}` : `  archived redo LSN ${s.fromLsn}..${s.toLsn} (${s.records} records) from ${s.source === 'archive' ? 'the archive' : "the repository's copy"}`);
  process.stdout.write(lines.join('\n') + '\n');
}
