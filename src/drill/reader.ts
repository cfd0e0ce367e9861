/**
 * A reader process for standbys (and primaries): loops over an invariant query until told to stop.
 *
 *   node dist/src/drill/reader.js --db dr.db [--duration-ms N] [--samples FILE] [--interval-ms 0]
 *
 * Each read, in one read transaction: the workload's counter (must never go backwards) and the sum of the
 * ledger (must always equal LEDGER_TOTAL: a different sum means a transaction was seen half applied).
 * With --samples it appends "wall-clock-ms counter" lines, so a test can check what a delayed standby
 * showed when. On exit prints one JSON line: reads, violations (with the first few), busy retries,
 * latency p50/p99 of a read in ms.
 */
import Database from 'better-sqlite3';
import { openSync, writeSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LEDGER_TOTAL } from './workload.js';

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

function main(): void {
  const path = arg('db')!;
  const durationMs = Number(arg('duration-ms', '3600000'));
  const intervalMs = Number(arg('interval-ms', '0'));
  const samplesPath = arg('samples');
  const samplesFd = samplesPath ? openSync(samplesPath, 'a') : -1;
  let db: Database.Database | null = null;
  let reads = 0;
  let busy = 0;
  let lastN = -1;
  const violations: string[] = [];
  const lat: number[] = [];
  const t0 = Date.now();
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.on('SIGINT', () => (stop = true));
  const finish = () => {
    lat.sort((a, b) => a - b);
    const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! : null);
    process.stdout.write(JSON.stringify({ reads, violations: violations.length, firstViolations: violations.slice(0, 5), busy, lastCounter: lastN, p50Ms: q(0.5), p99Ms: q(0.99) }) + '\n');
    process.exit(0);
  };
  const one = () => {
    if (!db) {
      if (!existsSync(path)) return;
      db = new Database(path, { fileMustExist: true, timeout: 5000 });
    }
    const t = performance.now();
    try {
      const row = db.transaction(() => ({
        n: db!.prepare('SELECT n FROM counter WHERE id = 1').pluck().get() as number | undefined,
        sum: db!.prepare('SELECT sum(amount) FROM ledger').pluck().get() as number | null,
      }))();
      lat.push(performance.now() - t);
      reads++;
      if (row.n === undefined) return; // the schema is not there yet (seeded before the application made it)
      if (row.sum !== LEDGER_TOTAL) violations.push(`ledger sums to ${row.sum} at counter ${row.n}`);
      if (row.n < lastN) violations.push(`counter went back from ${lastN} to ${row.n}`);
      lastN = row.n;
      if (samplesFd >= 0) writeSync(samplesFd, `${Date.now()} ${row.n}\n`);
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_READONLY_ROLLBACK') busy++;
      else if (/no such table/.test((e as Error).message)) return;
      else violations.push(`read failed: ${(e as Error).message}`);
    }
  };
  const loop = () => {
    const until = Date.now() + 20;
    while (!stop && Date.now() < until) {
      one();
      if (intervalMs > 0) break;
    }
    if (stop || Date.now() - t0 >= durationMs) finish();
    else setTimeout(loop, intervalMs);
  };
  loop();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main();
