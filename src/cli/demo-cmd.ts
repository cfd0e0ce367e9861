/**
 * The demo: a database with a small workload written by a separate process, captured by a primary in this
 * process; one status line a second until Ctrl-C (or --duration); then it restores the archive and checks
 * the result equals the database, so a new user sees the whole loop work on this machine.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { restoreFromArchive } from '../backup/index.js';
import { WORKLOAD_SCRIPT, createSchema } from '../drill/index.js';
import { startPrimary } from '../primary/index.js';
import { formatBytes, parseCount, parseDuration } from './units.js';
import { log } from './primary-cmd.js';
import { createHash } from 'node:crypto';

function rowHash(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const h = createHash('sha256');
    for (const r of db.prepare('SELECT id, k, v FROM t ORDER BY id').iterate() as Iterable<{ id: number; k: number; v: Buffer }>)
      h.update(`${r.id}:${r.k}:`).update(r.v);
    return h.digest('hex').slice(0, 16);
  } finally {
    db.close();
  }
}

export async function demoCommand(f: { dir: string; rate: string; duration?: string }): Promise<void> {
  const dir = resolve(f.dir);
  const rate = parseCount(f.rate, '--rate');
  const durationMs = f.duration ? parseDuration(f.duration, '--duration') : Infinity;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const dbPath = join(dir, 'app.db');
  const archive = join(dir, 'arch');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  createSchema(db);
  db.close();
  log(`demo in ${dir}: app.db written by a workload process at ${rate} transactions/s, archived into ${archive}`);
  const writer = spawn(process.execPath, [WORKLOAD_SCRIPT, '--db', dbPath, '--rate', String(rate), '--mix', 'small'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const primary = await startPrimary({ db: dbPath, archive, onEvent: (e) => e.type !== 'archived' && log(e.message) });
  const t0 = Date.now();
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const s = primary.status();
      process.stdout.write(
        `LSN ${s.lastLsn}  transactions ${s.stats.transactions}  pages ${s.stats.pages}  WAL ${formatBytes(s.walBytes)} (${s.stats.lastMxFrame} frames)  capture lag ${s.stats.lastMxFrame - s.stats.capturedFrame} frames  checkpoints ${s.stats.checkpoints}\n`,
      );
      if (Date.now() - t0 >= durationMs) finish();
    }, 1000);
    const finish = () => {
      clearInterval(timer);
      process.off('SIGINT', finish);
      done();
    };
    process.once('SIGINT', finish);
  });
  writer.kill('SIGTERM');
  await new Promise((r) => writer.once('exit', r));
  await primary.stop();
  const out = join(dir, 'restored.db');
  const r = restoreFromArchive({ archive, to: out });
  const same = rowHash(out) === rowHash(dbPath);
  log(`restored the archive to ${out} at LSN ${r.lsn}: ${same ? 'rows equal the database' : 'ROWS DIFFER'}`);
  if (!same) process.exitCode = 1;
}
