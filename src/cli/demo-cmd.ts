/**
 * The demo: a database with a small workload written by a separate process, a primary that captures and
 * serves it, and a delayed standby beside it (both in this process, talking over a real WebSocket on
 * loopback); one status line a second until Ctrl-C (or --duration). Then it restores the primary's archive
 * and checks the result equals the database, and checks the standby equals the primary at the LSN it had
 * applied, so a new user sees the whole loop work on this machine.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { restoreFromArchive } from '../backup/index.js';
import { WORKLOAD_SCRIPT, createSchema } from '../drill/index.js';
import { startPrimary } from '../primary/index.js';
import { startStandby } from '../standby/index.js';
import { formatAgo, formatBytes, parseCount, parseDuration } from './units.js';
import { log } from './primary-cmd.js';
import { createHash, randomBytes } from 'node:crypto';

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

export async function demoCommand(f: { dir: string; rate: string; duration?: string; delay: string }): Promise<void> {
  const dir = resolve(f.dir);
  const rate = parseCount(f.rate, '--rate');
  const durationMs = f.duration ? parseDuration(f.duration, '--duration') : Infinity;
  const delayMs = parseDuration(f.delay, '--delay');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const dbPath = join(dir, 'app.db');
  const archive = join(dir, 'arch');
  const drDb = join(dir, 'dr.db');
  const drArchive = join(dir, 'dr-arch');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  createSchema(db);
  db.close();
  const secret = randomBytes(32);
  log(`demo in ${dir}: app.db written by a workload process at ${rate} transactions/s, archived into arch/`);
  const writer = spawn(process.execPath, [WORKLOAD_SCRIPT, '--db', dbPath, '--rate', String(rate), '--mix', 'small'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const quiet = (e: { type: string; message?: string }) => e.type !== 'archived' && e.type !== 'info' && log(String(e.message));
  const primary = await startPrimary({ db: dbPath, archive, listen: { host: '127.0.0.1', port: 0 }, secret, onEvent: quiet });
  const url = `ws://127.0.0.1:${primary.server!.address.port}`;
  const standby = await startStandby({ db: drDb, archive: drArchive, from: url, secret, delayMs, name: 'demo standby', onEvent: quiet });
  log(`primary serving redo on ${url}; a standby keeps dr.db ${formatAgo(delayMs)} behind (its own archive: dr-arch/). Ctrl-C stops.`);
  const t0 = Date.now();
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const p = primary.status();
      const s = standby.status();
      const next = s.nextApplyAt ? `next apply LSN ${s.nextApplyLsn} in ${formatAgo(Math.max(0, new Date(s.nextApplyAt).getTime() - Date.now()))}` : 'nothing waiting';
      process.stdout.write(
        `primary LSN ${p.lastLsn} (WAL ${formatBytes(p.walBytes)}, capture lag ${p.stats.lastMxFrame - p.stats.capturedFrame} frames) | ` +
          `standby received ${s.receivedLsn}, applied ${s.appliedLsn ?? '-'} (delay ${formatAgo(s.delayMs)}, ${s.applyLagRecords ?? '-'} records behind), ${next}\n`,
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
  // After the stop: the applier (its own thread) may finish one more batch while stopping.
  await standby.stop();
  const st = standby.status();
  const out = join(dir, 'restored.db');
  const r = restoreFromArchive({ archive, to: out });
  const same = rowHash(out) === rowHash(dbPath);
  log(`restored the primary's archive to restored.db at LSN ${r.lsn}: ${same ? 'rows equal app.db' : 'ROWS DIFFER'}`);
  let standbyOk = true;
  if (st.appliedLsn !== null) {
    // The delayed copy must equal the primary as it was at the LSN the standby applied.
    const then = join(dir, 'primary-at-standby-lsn.db');
    restoreFromArchive({ archive, to: then, untilLsn: BigInt(st.appliedLsn) });
    standbyOk = rowHash(then) === rowHash(drDb);
    log(`standby dr.db is at LSN ${st.appliedLsn} (received ${st.receivedLsn}): ${standbyOk ? 'rows equal the primary at that LSN' : 'ROWS DIFFER'}`);
  } else log(`standby dr.db is not seeded yet: the delay (${formatAgo(delayMs)}) had not passed for the first base`);
  if (!same || !standbyOk) process.exitCode = 1;
}
