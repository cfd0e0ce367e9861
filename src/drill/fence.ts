/**
 * The fence: `node fence.js --db app.db`. Opens the database and prints "ready"; on SIGUSR1 takes its write
 * lock (BEGIN IMMEDIATE, waiting out a transaction in progress) and prints "locked"; holds it until SIGTERM.
 * The drill uses it when a primary's site dies: the daemon is killed with -9 and the application there can
 * no longer write, while its file stays as it was for a later reinstate. A process of its own, because
 * closing any descriptor of a database drops every POSIX lock the process holds on it.
 */
import Database from 'better-sqlite3';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function main(): void {
  const i = process.argv.indexOf('--db');
  const path = i >= 0 ? process.argv[i + 1] : undefined;
  if (!path) {
    process.stderr.write('fence: --db is required\n');
    process.exit(2);
  }
  const db = new Database(path, { fileMustExist: true, timeout: 10_000 });
  process.on('SIGUSR1', () => {
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write(`locked at ${Date.now()}\n`);
  });
  process.on('SIGTERM', () => {
    if (db.inTransaction) db.exec('ROLLBACK');
    db.close();
    process.exit(0);
  });
  setInterval(() => {}, 1 << 30);
  process.stdout.write('ready\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main();
