/**
 * Role transitions with real processes: switchover and back under a running writer (nothing lost, the
 * writer moves to the new primary, the old primary follows as a standby); failover after kill -9 of the
 * primary; split brain refused (a standby that has seen the new incarnation refuses the old primary, which
 * fences itself); reinstate of the diverged old primary copying only the pages that differ.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { WAL_FRAME_HEADER_BYTES, WAL_HEADER_BYTES, parseWalHeader, scanWalFrames } from '../../src/sqlite/index.js';
import {
  compareWithPrimary,
  differingPages,
  freePort,
  integrityCheck,
  logicalImage,
  makeDb,
  run,
  sleep,
  start,
  startPrimary,
  startStandbyProc,
  tempDir,
  tokenFile,
  treeFingerprint,
  waitForStatus,
  WORKLOAD,
  type Proc,
} from '../helpers/index.js';

async function kill9(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

function counterOf(db: string): number {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return d.prepare('SELECT n FROM counter').pluck().get() as number;
  } finally {
    d.close();
  }
}

/** Committed counters from a workload's --counter-log: "beginUs commitUs counter dbIndex" lines. */
function committed(log: string): Array<{ counter: number; db: number }> {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(' '))
    .map((f) => ({ counter: Number(f[2]), db: Number(f[3] ?? 0) }));
}

/** The pages the WAL of db holds in its valid chain of frames (what readers take from the WAL, not the file). */
function pagesInWal(db: string): Set<number> {
  const out = new Set<number>();
  if (!existsSync(`${db}-wal`)) return out;
  const wal = readFileSync(`${db}-wal`);
  const hdr = parseWalHeader(wal);
  if (!hdr) return out;
  const frames = Math.floor((wal.length - WAL_HEADER_BYTES) / (WAL_FRAME_HEADER_BYTES + hdr.pageSize));
  const scan = scanWalFrames(hdr, wal.subarray(WAL_HEADER_BYTES), 1, frames, hdr.checksum);
  for (const t of scan.transactions) for (const [pgno] of t.pages) out.add(pgno);
  return out;
}

/** integrity_check's answer, or the error SQLite raised reading a damaged file. */
function healthy(db: string): string {
  try {
    return integrityCheck(db);
  } catch (e) {
    return (e as Error).message;
  }
}

function expectEqual(primary: string, standby: string): void {
  const cmp = compareWithPrimary(primary, standby);
  expect(cmp.differing, `${standby} vs ${primary}`).toEqual([]);
  expect(cmp.rowsEqual).toBe(true);
  expect(cmp.integrity).toBe('ok');
}

async function setup() {
  const dir = tempDir();
  const token = tokenFile(dir);
  const a = { db: join(dir, 'a.db'), archive: join(dir, 'a-arch'), port: await freePort() };
  const b = { db: join(dir, 'b.db'), archive: join(dir, 'b-arch'), port: await freePort() };
  makeDb(a.db);
  return { dir, token, a, b, url: (p: number) => `ws://127.0.0.1:${p}` };
}

describe('roles', () => {
  test('switchover and back under a running writer: nothing lost, the writer follows the primary, both files end equal', async () => {
    const e = await setup();
    const { a, b } = e;
    const primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--listen', `127.0.0.1:${b.port}`] });
    await waitForStatus(b.archive, (s) => s.appliedLsn !== null && s.connected);
    const log = join(e.dir, 'counter.log');
    const writer = start(['--db', a.db, '--db', b.db, '--rate', '300', '--duration-ms', '15000', '--counter-log', log], { script: WORKLOAD });
    await sleep(1500);

    const there = await run(['switchover', '--to', e.url(b.port), '--token-file', e.token, '--json']);
    expect(there.code, there.stderr).toBe(0);
    const r1 = JSON.parse(there.stdout) as { incarnation: number; outageMs: number; lsn: string };
    expect(r1.incarnation).toBe(2);
    expect(r1.outageMs).toBeLessThan(5000);
    await sleep(2000);
    // The old primary is now a standby of b, in the same process, serving onward on its old address.
    await waitForStatus(a.archive, (s) => s.connected === true && s.from === e.url(b.port), 20_000);
    const back = await run(['switchover', '--to', e.url(a.port), '--token-file', e.token, '--json']);
    expect(back.code, back.stderr).toBe(0);
    expect((JSON.parse(back.stdout) as { incarnation: number }).incarnation).toBe(3);

    const { code } = await writer.exited;
    expect(code, writer.stderr).toBe(0);
    const commits = committed(log);
    const switches = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('# switch'));
    expect(switches.length).toBe(2);
    // Writes went to b between the switches, and to a again after.
    expect(commits.some((c) => c.db === 1)).toBe(true);
    expect(commits[commits.length - 1]!.db).toBe(0);
    // Zero loss: the counter rows committed are all there, in order, on the final primary and its standby.
    const last = commits[commits.length - 1]!.counter;
    expect(commits.map((c) => c.counter)).toEqual(Array.from({ length: commits.length }, (_, i) => i + 1));
    expect(counterOf(a.db)).toBe(last);
    const st = await waitForStatus(b.archive, (s) => s.appliedLsn !== null && s.appliedLsn === s.receivedLsn && BigInt(s.receivedLsn) > BigInt(r1.lsn) + 100n && s.from === e.url(a.port), 20_000);
    expect(st.role).toBe('standby');
    await sleep(300);
    // Both daemons stop cleanly; then b is the standby copy of a, page for page.
    primary.child.kill('SIGTERM');
    standby.child.kill('SIGTERM');
    await Promise.all([primary.exited, standby.exited]);
    expectEqual(a.db, b.db);
    // History: three incarnations, identical on both sides.
    const lineOf = (arch: string) =>
      (JSON.parse(readFileSync(join(arch, 'history.json'), 'utf8')) as { incarnations: Array<Record<string, unknown>> }).incarnations.map((i) => [i.incarnation, i.forkLsn, i.id]);
    expect(lineOf(a.archive)).toEqual(lineOf(b.archive));
    expect(lineOf(a.archive).length).toBe(3);
    // b was demoted: it cannot be started as a primary by mistake.
    const refused = await run(['primary', '--db', b.db, '--archive', b.archive]);
    expect(refused.code).toBe(60);
    expect(refused.stderr).toMatch(/no longer a primary.*reinstate/s);
  }, 90_000);

  test('failover after kill -9, split brain refused, reinstate copies only the differing pages', async () => {
    const e = await setup();
    const { a, b } = e;
    const c = { archive: join(e.dir, 'c-arch') }; // an archive-only DR site
    // History no one touches afterwards (~4 MB): reinstate must not copy it.
    const h = new Database(a.db);
    h.exec(`CREATE TABLE history (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO history SELECT i, randomblob(3900) FROM n;`);
    h.close();
    let primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    let standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--listen', `127.0.0.1:${b.port}`] });
    let site = await startStandbyProc({ archive: c.archive, from: e.url(a.port), token: e.token });
    const w1 = start(['--db', a.db, '--rate', '400', '--duration-ms', '1500'], { script: WORKLOAD });
    await w1.exited;
    await waitForStatus(b.archive, (s) => s.appliedLsn !== null && s.appliedLsn === s.receivedLsn && s.receiveLagRecords === '0');
    // The standby goes away; the primary commits more (these never reach b); then the primary dies.
    await kill9(standby);
    await kill9(site);
    const w2 = start(['--db', a.db, '--rate', '400', '--duration-ms', '800'], { script: WORKLOAD });
    await w2.exited;
    await sleep(300);
    await kill9(primary);
    const oldLast = BigInt(JSON.parse((await run(['status', '--archive', a.archive, '--json'])).stdout).lastLsn);

    // Failover: b's daemon restarts (its primary is dead) and is promoted.
    standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--listen', `127.0.0.1:${b.port}`] });
    const t0 = Date.now();
    const pr = await run(['promote', '--archive', b.archive, '--json']);
    expect(pr.code, pr.stderr).toBe(0);
    const promoted = JSON.parse(pr.stdout) as { incarnation: number; forkLsn: string; promoteMs: number };
    expect(promoted.incarnation).toBe(2);
    expect(BigInt(promoted.forkLsn)).toBeLessThan(oldLast);
    // First accepted write on the promoted database.
    const wb = new Database(b.db, { timeout: 5000 });
    wb.prepare('UPDATE counter SET n = n + 1000000').run();
    const firstWriteMs = Date.now() - t0;
    wb.close();
    expect(firstWriteMs).toBeLessThan(10_000);
    const w3 = start(['--db', b.db, '--rate', '300', '--duration-ms', '1000'], { script: WORKLOAD });
    await w3.exited;
    // The DR site follows the new primary (it had nothing after the fork point).
    site = await startStandbyProc({ archive: c.archive, from: e.url(b.port), token: e.token });
    await waitForStatus(c.archive, (s) => s.receiveLagRecords === '0' && BigInt(s.receivedLsn) > BigInt(promoted.forkLsn) + 1n);
    await kill9(site);

    // Split brain: the old primary comes back with its old config and writes on.
    primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const w4 = start(['--db', a.db, '--rate', '300', '--duration-ms', '500'], { script: WORKLOAD });
    await w4.exited;
    const siteBefore = JSON.parse((await run(['status', '--archive', c.archive, '--json'])).stdout).receivedLsn as string;
    // The DR site, pointed at the old primary by mistake, refuses it: it has seen incarnation 2.
    const wrong = start(['standby', '--archive', c.archive, '--from', e.url(a.port), '--token-file', e.token]);
    const { code: wrongCode } = await wrong.exited;
    expect(wrongCode).toBe(60);
    expect(wrong.stderr).toMatch(/superseded/);
    expect(JSON.parse((await run(['status', '--archive', c.archive, '--json'])).stdout).receivedLsn).toBe(siteBefore);
    // The old primary learned it was superseded: it fences itself, refuses everyone, and says why.
    await primary.waitFor(/FENCED/, 10_000);
    expect(existsSync(join(a.archive, 'fenced.json'))).toBe(true);
    primary.child.kill('SIGTERM');
    await primary.exited;
    const again = await run(['primary', '--db', a.db, '--archive', a.archive]);
    expect(again.code).toBe(60);

    // Reinstate: a becomes a standby of b, copying only differing pages; its extra transactions are listed.
    // Nothing writes to b now: the pages that differ can be counted here, independently of reinstate.
    const imgA = logicalImage(a.db);
    const imgB = logicalImage(b.db);
    const differ = differingPages(imgA, imgB, 4096).filter((p) => p <= imgB.length / 4096).length;
    const rs = await run(['reinstate', '--db', a.db, '--archive', a.archive, '--from', e.url(b.port), '--token-file', e.token, '--json', '--no-serve']);
    expect(rs.code, rs.stderr).toBe(0);
    const rep = JSON.parse(rs.stdout) as { pagesCopied: number; databasePages: number; discarded: Array<{ lsn: string }>; discardedKeptIn: string; forkLsn: string };
    expect(rep.forkLsn).toBe(promoted.forkLsn);
    expect(rep.discarded.length).toBeGreaterThan(0);
    expect(BigInt(rep.discarded[0]!.lsn)).toBe(BigInt(promoted.forkLsn) + 1n);
    expect(existsSync(join(rep.discardedKeptIn, 'records.json'))).toBe(true);
    expect(rep.pagesCopied).toBe(differ);
    expect(rep.pagesCopied).toBeGreaterThan(0);
    expect(rep.pagesCopied).toBeLessThan(rep.databasePages / 2);
    // Then a runs as b's standby and ends equal to it.
    const sa = await startStandbyProc({ db: a.db, archive: a.archive, from: e.url(b.port), token: e.token });
    await waitForStatus(a.archive, (s) => s.appliedLsn !== null && s.appliedLsn === s.receivedLsn && s.receiveLagRecords === '0', 20_000);
    sa.child.kill('SIGTERM');
    standby.child.kill('SIGTERM');
    await Promise.all([sa.exited, standby.exited]);
    expectEqual(b.db, a.db);
    expect(counterOf(a.db)).toBeGreaterThan(1_000_000);
  }, 120_000);
});

describe('page repair', () => {
  test('damaged pages of a live primary are rewritten from a standby, from an archive, and from backups + redo', async () => {
    const e = await setup();
    const { a, b } = e;
    const repo = join(e.dir, 'repo');
    const primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--listen', `127.0.0.1:${b.port}`] });
    const w1 = start(['--db', a.db, '--rate', '0', '--count', '3000'], { script: WORKLOAD });
    await w1.exited;
    const bk = await run(['backup', '--db', a.db, '--archive', a.archive, '--repo', repo]);
    expect(bk.code, bk.stderr).toBe(0);
    const w2 = start(['--db', a.db, '--rate', '0', '--count', '500'], { script: WORKLOAD });
    await w2.exited;
    // Let capture checkpoint everything, then one small commit restarts the WAL: table pages then live in the
    // database file only, where damage would be read.
    await sleep(1500);
    const conn = new Database(a.db, { timeout: 5000 });
    conn.prepare('UPDATE counter SET n = n + 1').run();
    const leaves = conn.prepare("SELECT pageno FROM dbstat WHERE name = 't' AND pagetype = 'leaf' ORDER BY pageno").pluck().all() as number[];
    conn.close();
    // Whether the WAL restarted depends on where capture's last checkpoint cycle fell: a page still in the WAL
    // would hide damage written to the file. Victims are leaves the WAL does not hold.
    const inWal = pagesInWal(a.db);
    const outside = leaves.filter((p) => !inWal.has(p));
    expect(outside.length).toBeGreaterThan(8);
    const victims = [outside[3]!, outside[outside.length - 4]!];
    await waitForStatus(b.archive, (s) => s.receiveLagRecords === '0' && s.appliedLsn === s.receivedLsn);

    const damage = () => {
      const fd = openSync(a.db, 'r+');
      for (const p of victims) writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, (p - 1) * 4096);
      closeSync(fd);
      expect(healthy(a.db)).not.toBe('ok');
    };
    for (const from of [e.url(b.port), b.archive, repo]) {
      damage();
      const r = await run(['repair', '--db', a.db, '--pages', victims.join(','), '--from', from, '--token-file', e.token, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { pages: Array<{ pgno: number }> };
      expect(out.pages.map((p) => p.pgno)).toEqual(victims);
      expect(healthy(a.db), from).toBe('ok');
    }
    // A source of another database is refused, and nothing is written.
    const other = join(e.dir, 'other-arch');
    makeDb(join(e.dir, 'o.db'));
    const op = await startPrimary(join(e.dir, 'o.db'), other);
    op.child.kill('SIGTERM');
    await op.exited;
    const before = readFileSync(a.db);
    const bad = await run(['repair', '--db', a.db, '--pages', String(victims[0]), '--from', other]);
    expect(bad.code).toBe(20);
    expect(readFileSync(a.db).equals(before)).toBe(true);

    primary.child.kill('SIGTERM');
    await primary.exited;
    await waitForStatus(b.archive, (s) => s.receiveLagRecords === '0' && s.appliedLsn === s.receivedLsn);
    standby.child.kill('SIGTERM');
    await standby.exited;
    expectEqual(a.db, b.db);
  }, 90_000);
});

describe('promote without a running daemon, and refusals', () => {
  test('promote --until-lsn --no-serve forks there, sets later records aside, and a primary continues the archive at once', async () => {
    const e = await setup();
    const { a, b } = e;
    const primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--delay', '1h'] });
    const w = start(['--db', a.db, '--rate', '0', '--count', '400'], { script: WORKLOAD });
    await w.exited;
    const st = await waitForStatus(b.archive, (s) => s.receiveLagRecords === '0' && BigInt(s.receivedLsn) > 300n);
    standby.child.kill('SIGTERM');
    primary.child.kill('SIGTERM');
    await Promise.all([standby.exited, primary.exited]);
    const at = BigInt(st.receivedLsn) - 50n;
    // The standby has not even seeded its database (its delay is an hour): promotion builds it from the
    // archive up to the point regardless.
    const r = await run(['promote', '--archive', b.archive, '--until-lsn', String(at), '--no-serve', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { forkLsn: string; setAside: number; setAsideDir: string };
    expect(out.forkLsn).toBe(String(at));
    expect(out.setAside).toBe(50);
    expect(readFileSync(b.db)[18]).toBe(2); // WAL mode
    // The promoted file equals the old primary's archive restored at the fork point.
    const then = join(e.dir, 'then.db');
    expect((await run(['restore', '--archive', a.archive, '--to', then, '--until-lsn', String(at)])).code).toBe(0);
    expectEqual(then, b.db);
    // A primary on the promoted files continues from the archived fork record (no resync, no new base).
    // Its archive was a standby's: the confirmed LSN it kept goes, every record is the primary's own now.
    expect(existsSync(join(b.archive, 'confirmed.json'))).toBe(true);
    const p2 = await startPrimary(b.db, b.archive);
    expect(existsSync(join(b.archive, 'confirmed.json'))).toBe(false);
    expect(p2.stderr).toMatch(/start: continued/);
    p2.child.kill('SIGTERM');
    await p2.exited;
    const again = await run(['promote', '--archive', b.archive, '--no-serve']);
    expect(again.code).toBe(62);
    expect(again.stderr).toMatch(/already the primary of incarnation 2/);
  }, 60_000);

  test('an application that keeps committing to the old primary through a switchover gets no commit in after the freeze', async () => {
    // Demotion waits for the application to leave the file (SQLite leaves WAL mode only for a connection
    // alone on it). This application does not follow the switchover: it retries its commit on the old
    // primary every few milliseconds for 2 s after the switchover began, then closes. Every commit it is told
    // succeeded must be on the new primary, and the old primary must then become its standby. (Before the
    // demotion waited for other processes to close the file, a retry caught the lock in the instant an
    // attempt freed it: the commit was on no standby and the old primary refused to follow, DIVERGED.)
    const e = await setup();
    const { a, b } = e;
    const primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--listen', `127.0.0.1:${b.port}`] });
    await waitForStatus(b.archive, (s) => s.appliedLsn !== null && s.connected);
    const script = join(e.dir, 'stubborn-app.cjs');
    writeFileSync(
      script,
      `const Database = require(${JSON.stringify(join(process.cwd(), 'node_modules', 'better-sqlite3'))});
      const fs = require('fs');
      const [db, go] = process.argv.slice(2);
      const d = new Database(db, { timeout: 2 });
      let last = 0, until = Infinity;
      const step = () => {
        if (until === Infinity && fs.existsSync(go)) until = Date.now() + 2000;
        if (Date.now() > until) { d.close(); console.log('last ' + last); return; }
        try { d.prepare('UPDATE counter SET n = n + 1').run(); last = d.prepare('SELECT n FROM counter').pluck().get(); } catch (e) { if (!String(e.code).startsWith('SQLITE_BUSY')) throw e; }
        setTimeout(step, 1);
      };
      step();`,
    );
    const go = join(e.dir, 'go');
    const app = start([a.db, go], { script });
    await sleep(800);
    writeFileSync(go, '');
    const r = await run(['switchover', '--to', e.url(b.port), '--token-file', e.token, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { code } = await app.exited;
    expect(code, app.stderr).toBe(0);
    const last = Number(/last (\d+)/.exec(app.stdout)?.[1]);
    expect(last).toBeGreaterThan(0);
    // The old primary follows the new one once the application has gone (no commit of its own in between).
    await waitForStatus(a.archive, (s) => s.connected === true && s.from === e.url(b.port), 20_000);
    expect(primary.stderr).not.toMatch(/committed to .* after the switchover froze it/);
    expect(counterOf(b.db)).toBeGreaterThanOrEqual(last);
    primary.child.kill('SIGTERM');
    standby.child.kill('SIGTERM');
    await Promise.all([primary.exited, standby.exited]);
  }, 60_000);

  test('switchover to a delayed standby that is behind is refused, and the primary keeps taking writes', async () => {
    const e = await setup();
    const { a, b } = e;
    const primary = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const standby = await startStandbyProc({ db: b.db, archive: b.archive, from: e.url(a.port), token: e.token, extra: ['--delay', '1h', '--listen', `127.0.0.1:${b.port}`] });
    const w = start(['--db', a.db, '--rate', '0', '--count', '100'], { script: WORKLOAD });
    await w.exited;
    await waitForStatus(b.archive, (s) => s.receiveLagRecords === '0' && s.connected);
    const r = await run(['switchover', '--to', e.url(b.port), '--token-file', e.token]);
    expect(r.code).toBe(62);
    expect(r.stderr).toMatch(/delay .* cannot become the primary without first catching up/);
    expect(r.stderr).toMatch(/--delay 0/);
    const conn = new Database(a.db, { timeout: 2000 });
    conn.prepare('UPDATE counter SET n = n + 1').run();
    conn.close();
    expect(existsSync(join(a.archive, 'fenced.json'))).toBe(false);
    // A wrong secret is refused before anything is asked of anyone.
    const wrong = join(e.dir, 'wrong');
    writeFileSync(wrong, 'x'.repeat(40));
    const r2 = await run(['switchover', '--to', e.url(b.port), '--token-file', wrong]);
    expect(r2.code).toBe(41);
    primary.child.kill('SIGTERM');
    standby.child.kill('SIGTERM');
    await Promise.all([primary.exited, standby.exited]);
  }, 60_000);
});

describe('role commands against another database', () => {
  test('reinstate and repair from a primary of another database are refused, and change no file', async () => {
    const e = await setup();
    const { a, b } = e;
    makeDb(b.db);
    // Two unrelated primaries that happen to share a secret.
    const pa = await startPrimary(a.db, a.archive, ['--listen', `127.0.0.1:${a.port}`, '--token-file', e.token]);
    const pb = await startPrimary(b.db, b.archive, ['--listen', `127.0.0.1:${b.port}`, '--token-file', e.token]);
    const w = start(['--db', a.db, '--rate', '0', '--count', '50'], { script: WORKLOAD });
    await w.exited;
    const rp = await run(['repair', '--db', a.db, '--pages', '2', '--from', e.url(b.port), '--token-file', e.token]);
    expect(rp.code, rp.stderr).toBe(20);
    expect(rp.stderr).toMatch(/not [0-9a-f]{32}/);
    pa.child.kill('SIGTERM');
    await pa.exited;
    const fp = () => treeFingerprint(a.archive) + createHash('sha256').update(readFileSync(a.db)).digest('hex');
    const before = fp();
    const r = await run(['reinstate', '--db', a.db, '--archive', a.archive, '--from', e.url(b.port), '--token-file', e.token, '--no-serve']);
    expect(r.code, r.stderr).toBe(20);
    expect(r.stderr).toMatch(/serves database .* belongs to/);
    pb.child.kill('SIGTERM');
    await pb.exited;
    expect(fp(), 'the old primary\'s files are unchanged').toBe(before);
  }, 60_000);
});
