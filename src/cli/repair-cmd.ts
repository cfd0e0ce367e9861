/**
 * `redoship repair --db app.db --pages 5,9 --from SOURCE`: block media recovery (roles/repair.ts). SOURCE is
 * a standby or primary (ws://HOST:PORT, answered from its archive), an archive directory (a standby's, or
 * this primary's own), or a backup repository (its sets plus archived redo). The primary's archive is found
 * from the running primary (--archive overrides).
 */
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RedoshipError } from '../error/index.js';
import { Archive, lockInfo, type Lsn } from '../redo/index.js';
import { lockForRepair, overlay, pageImagesAt } from '../roles/index.js';
import { pageHash, pageHashAlgorithmNamed } from '../sqlite/index.js';
import { controlRequest } from '../transport/index.js';
import { readKeyFile, restoreFromRepo } from '../backup/index.js';
import { readSecret, readTlsFile } from './net-flags.js';
import { log } from './primary-cmd.js';

export interface RepairFlags {
  db?: string;
  pages?: string;
  from?: string;
  archive?: string;
  tokenFile?: string;
  tlsCa?: string;
  keyFile?: string;
  json?: boolean;
  quiet?: boolean;
}

function parsePages(s: string): number[] {
  const out = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) throw new RedoshipError('USAGE', `--pages ${s}: "${part}" is not a page number or range`, 'write it like --pages 5,9,20-24');
    const a = Number(m[1]);
    const b = m[2] ? Number(m[2]) : a;
    if (a < 1 || b < a || b - a > 1_000_000) throw new RedoshipError('USAGE', `--pages ${s}: bad range ${part}`, 'pages are numbered from 1');
    for (let p = a; p <= b; p++) out.add(p);
  }
  return [...out].sort((x, y) => x - y);
}

export async function repairCommand(f: RepairFlags): Promise<void> {
  if (!f.db || !f.pages || !f.from)
    throw new RedoshipError('USAGE', 'repair needs --db, --pages and --from', 'example: redoship repair --db app.db --pages 5,9 --from ws://standby:7401 --token-file secret');
  const db = resolve(f.db);
  const pgnos = parsePages(f.pages);
  const archiveDir = f.archive ?? lockInfo(`${db}-redoship.lock`);
  if (!archiveDir)
    throw new RedoshipError('USAGE', `no redoship primary is running on ${db}, so its archive is not known`, 'start `redoship primary` on it, or give --archive DIR');
  const archive = Archive.open(archiveDir);
  const say = (m: string) => !f.quiet && !f.json && log(m);
  const t0 = performance.now();
  const target = await lockForRepair(db, archive);
  let images: Map<number, Buffer>;
  let written: Array<{ pgno: number; hash: string }>;
  try {
    const sizePages = archive.tail()!.sizePages;
    const beyond = pgnos.filter((p) => p > sizePages);
    if (beyond.length) throw new RedoshipError('USAGE', `pages ${beyond.join(',')} are past the end of ${db} (${sizePages} pages)`, 'give pages of the database');
    say(`repairing pages ${pgnos.join(',')} of ${db} at LSN ${target.lsn} from ${f.from}`);
    images = await imagesFrom(f, pgnos, target.lsn, archive);
    for (const p of pgnos) if (!images.has(p)) throw new RedoshipError('TARGET_UNREACHABLE', `${f.from} has no image of page ${p} at LSN ${target.lsn}`, 'repair from another source');
    written = target.write(images);
  } finally {
    target.release();
  }
  const out = { db, lsn: String(target.lsn), from: f.from, pages: written, ms: Math.round(performance.now() - t0) };
  if (f.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else process.stdout.write(`repaired ${written.length} page(s) of ${db} at LSN ${target.lsn} from ${f.from}: ${written.map((w) => `${w.pgno} (${w.hash.slice(0, 12)})`).join(', ')}; each read back and checked by page hash\n`);
}

/** Images of pgnos at lsn from the source; checked against the local archive where it knows them. */
async function imagesFrom(f: RepairFlags, pgnos: number[], lsn: Lsn, archive: Archive): Promise<Map<number, Buffer>> {
  const src = f.from!;
  if (/^wss?:\/\//.test(src)) {
    const ca = readTlsFile(f.tlsCa, '--tls-ca');
    const r = (await controlRequest({ url: src, secret: readSecret(f.tokenFile, 'repair'), ...(ca ? { tls: { ca } } : {}), op: 'page-images', args: { pgnos, lsn: String(lsn), databaseId: archive.identity.databaseId }, timeoutMs: 120_000 })) as {
      pages: Array<[number, string, string]>;
      hashAlgorithm?: unknown;
    };
    const algorithm = pageHashAlgorithmNamed(r.hashAlgorithm);
    if (!algorithm) throw new RedoshipError('PEER_REFUSED', `${src} hashes pages with "${String(r.hashAlgorithm)}", which this redoship does not know`, 'repair with the same redoship version on both ends');
    const m = new Map<number, Buffer>();
    for (const [pgno, b64, hash] of r.pages) {
      const img = Buffer.from(b64, 'base64');
      if (pageHash(pgno, img, algorithm).toString('hex') !== hash) throw new RedoshipError('PEER_REFUSED', `${src} sent page ${pgno} with a wrong hash`, 'run repair again');
      m.set(pgno, img);
    }
    return m;
  }
  if (existsSync(join(src, 'archive.json'))) {
    const other = Archive.open(src);
    if (other.identity.databaseId !== archive.identity.databaseId)
      throw new RedoshipError('WRONG_DATABASE', `${src} is an archive of database ${other.identity.databaseId}, not ${archive.identity.databaseId}`, 'give an archive of this database (its standby\'s, or its own)');
    return pageImagesAt(other, pgnos, lsn);
  }
  // A backup repository: restore its best chain to a scratch file at the latest point it reaches, then
  // bring the pages to lsn with the primary's archive.
  const scratch = mkdtempSync(join(resolve(f.db!, '..'), '.redoship-repair-'));
  try {
    const to = join(scratch, 'restored.db');
    const secret = f.keyFile ? readKeyFile(f.keyFile) : undefined;
    const r = await restoreFromRepo({ repo: src, archive: archive.dir, to, untilLsn: lsn, ...(secret ? { encryptionSecret: secret } : {}) });
    const fd = openSync(to, 'r');
    const m = new Map<number, Buffer>();
    try {
      const ps = archive.identity.pageSize;
      for (const p of pgnos) {
        const b = Buffer.alloc(ps);
        if (readSync(fd, b, 0, ps, (p - 1) * ps) === ps) m.set(p, b);
      }
    } finally {
      closeSync(fd);
    }
    const reached = BigInt(r.plan.targetLsn) as Lsn;
    return reached < lsn ? overlay(archive, m, pgnos, (reached + 1n) as Lsn, lsn) : m;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}



