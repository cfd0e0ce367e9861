/**
 * Standby crash paths with real processes: the applier killed in the middle of a batch (SQLite rolls the
 * hot journal back to exactly the previous committed state), the standby and the primary killed -9 and
 * restarted under a writer, a link that stalls and drops, and a standby started long after the primary
 * (it catches up from the primary's archive). Each ends equal to the primary page for page.
 */
import Database from 'better-sqlite3';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  compareWithPrimary,
  differingPages,
  freePort,
  makeDb,
  run,
  sleep,
  start,
  startPrimary,
  startStandbyProc,
  startWorkload,
  stopGracefully,
  tempDir,
  tokenFile,
  waitForStatus,
  type Proc,
} from '../helpers/index.js';

async function kill9(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

function equalToPrimary(db: string, standby: string): void {
  const cmp = compareWithPrimary(db, standby);
  expect(cmp.differing, standby).toEqual([]);
  expect(cmp.rowsEqual).toBe(true);
  expect(cmp.integrity).toBe('ok');
}

async function setup() {
  const dir = tempDir();
  const db = join(dir, 'app.db');
  const arch = join(dir, 'arch');
  const token = tokenFile(dir);
  makeDb(db);
  const port = await freePort();
  const listen = ['--listen', `127.0.0.1:${port}`, '--token-file', token];
  return { dir, db, arch, token, port, listen, from: `ws://127.0.0.1:${port}` };
}

describe('standby crash paths', () => {
  // Three places to die: pages written (hot journal), the pending batch recorded (still a hot journal), and
  // just after the commit point (the state file behind the database by one batch).
  for (const point of ['apply-before-commit', 'apply-pending-recorded', 'apply-after-commit'])
  test(`the applier killed -9 mid-batch at ${point}: the database is a committed state; the restart catches up`, async () => {
    const e = await setup();
    const primary = await startPrimary(e.db, e.arch, e.listen);
    const s = { db: join(e.dir, 'dr.db'), archive: join(e.dir, 'dr-arch') };
    let sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
    await startWorkload(e.db, { seed: 1, count: 100 }).result();
    await waitForStatus(s.archive, (x) => x.appliedLsn === '101');
    await kill9(sp);
    // The next batch that reaches LSN 150 dies after writing its pages, before deleting its journal.
    sp = await startStandbyProc({ ...s, from: e.from, token: e.token, env: { REDOSHIP_CRASH_AT: `${point}:150` } });
    await startWorkload(e.db, { seed: 2, count: 100 }).result();
    const { signal } = await sp.exited;
    expect(signal).toBe('SIGKILL');
    const committed = point === 'apply-after-commit';
    expect(existsSync(`${s.db}-journal`)).toBe(!committed); // a hot journal unless the batch committed
    const state = JSON.parse(readFileSync(join(s.archive, 'standby.state.json'), 'utf8'));
    const appliedBefore = (committed ? state.pending.lsn : state.appliedLsn) as string;
    // SQLite itself (a reader) rolls it back; the result is exactly the standby archive at that LSN.
    const reader = new Database(s.db);
    expect(reader.prepare('PRAGMA integrity_check').pluck().get()).toBe('ok');
    reader.close();
    expect(existsSync(`${s.db}-journal`)).toBe(false);
    const expected = join(e.dir, 'expected.db');
    const r = await run(['restore', '--archive', s.archive, '--to', expected, '--until-lsn', appliedBefore]);
    expect(r.code, r.stderr).toBe(0);
    expect(differingPages(readFileSync(expected), readFileSync(s.db), 4096)).toEqual([]);
    // Restarted without the hook, the standby catches up.
    sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
    await waitForStatus(s.archive, (x) => x.appliedLsn === '201');
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    equalToPrimary(e.db, s.db);
  });

  test('standby and primary killed -9 and restarted under a writer: nothing lost or applied twice', async () => {
    const e = await setup();
    let primary = await startPrimary(e.db, e.arch, e.listen);
    const s = { db: join(e.dir, 'dr.db'), archive: join(e.dir, 'dr-arch') };
    let sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
    const writer = startWorkload(e.db, { seed: 3, mix: 'stress', rate: 100, 'duration-ms': 6000 });
    for (let i = 0; i < 3; i++) {
      await sleep(900);
      await kill9(sp);
      await sleep(200);
      sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
      await sleep(600);
      await kill9(primary);
      await sleep(200);
      primary = await startPrimary(e.db, e.arch, e.listen);
    }
    await writer.result();
    const last = (await waitForStatus(e.arch, () => true)).lastLsn as string;
    await waitForStatus(s.archive, (x) => x.appliedLsn === last, 30_000);
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    equalToPrimary(e.db, s.db);
    const v = await run(['archive', 'verify', '--archive', s.archive]);
    expect(v.code, v.stdout).toBe(0);
  });

  test('a link that stalls and drops: the standby reconnects with backoff and ends equal', async () => {
    const e = await setup();
    const primary = await startPrimary(e.db, e.arch, e.listen);
    // A TCP proxy on loopback that the test can stall (stop forwarding) and cut (destroy every connection).
    const proxyPort = await freePort();
    let stalled = false;
    const pairs = new Set<[Socket, Socket]>();
    const proxy = createServer((client) => {
      const upstream = connect(e.port, '127.0.0.1');
      const pair: [Socket, Socket] = [client, upstream];
      pairs.add(pair);
      const forward = (from: Socket, to: Socket) =>
        from.on('data', (d) => {
          if (stalled) from.pause();
          to.write(d);
        });
      forward(client, upstream);
      forward(upstream, client);
      const end = () => {
        client.destroy();
        upstream.destroy();
        pairs.delete(pair);
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((r) => proxy.listen(proxyPort, '127.0.0.1', () => r()));
    const s = { db: join(e.dir, 'dr.db'), archive: join(e.dir, 'dr-arch') };
    const sp = await startStandbyProc({ ...s, from: `ws://127.0.0.1:${proxyPort}`, token: e.token });
    const writer = startWorkload(e.db, { seed: 4, rate: 200, 'duration-ms': 5000 });
    await sleep(1000);
    stalled = true; // traffic stops; the writer goes on
    await sleep(1500);
    stalled = false;
    for (const [a, b] of pairs) {
      a.resume();
      b.resume();
    }
    await sleep(500);
    for (const [a, b] of [...pairs]) {
      a.destroy(); // cut
      b.destroy();
    }
    await sleep(800);
    for (const [a, b] of [...pairs]) {
      a.destroy(); // and again, right after it reconnected
      b.destroy();
    }
    await writer.result();
    const last = (await waitForStatus(e.arch, () => true)).lastLsn as string;
    await waitForStatus(s.archive, (x) => x.appliedLsn === last, 30_000);
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    proxy.close();
    equalToPrimary(e.db, s.db);
  });

  test('a standby started long after the primary catches up from the archive (gap fetch)', async () => {
    const e = await setup();
    const primary = await startPrimary(e.db, e.arch, [...e.listen, '--segment-size', '64KB']);
    await startWorkload(e.db, { seed: 5, mix: 'stress', count: 400 }).result();
    const segs = (await run(['archive', 'list', '--archive', e.arch, '--json'])).stdout;
    expect(JSON.parse(segs).segments.length).toBeGreaterThan(3); // several sealed segments to fetch
    const s = { db: join(e.dir, 'dr.db'), archive: join(e.dir, 'dr-arch') };
    const sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
    const writer = startWorkload(e.db, { seed: 6, rate: 100, 'duration-ms': 1500 }); // and it goes on writing
    await writer.result();
    const last = (await waitForStatus(e.arch, () => true)).lastLsn as string;
    await waitForStatus(s.archive, (x) => x.appliedLsn === last, 30_000);
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    equalToPrimary(e.db, s.db);
  });
});

describe('an archive that no longer reaches back', () => {
  test('a standby that needs LSNs the primary no longer holds is told to be seeded again, clearly', async () => {
    const e = await setup();
    const flags = [...e.listen, '--segment-size', '64KB']; // many sealed segments, so that some can go
    let primary = await startPrimary(e.db, e.arch, flags);
    const s = { db: join(e.dir, 'dr.db'), archive: join(e.dir, 'dr-arch') };
    const sp = await startStandbyProc({ ...s, from: e.from, token: e.token });
    await startWorkload(e.db, { seed: 1, count: 50 }).result();
    await waitForStatus(s.archive, (x) => x.appliedLsn === '51');
    expect(await stopGracefully(sp)).toBe(0);
    // The primary goes on alone; then, while it is down, most of the database changes and the application
    // closes (the WAL is checkpointed away): the restart archives a new base.
    await startWorkload(e.db, { seed: 2, count: 50 }).result();
    await waitForStatus(e.arch, (x) => x.lastLsn === '101');
    await kill9(primary);
    const app = new Database(e.db);
    app.exec("UPDATE t SET v = randomblob(200); UPDATE ledger SET amount = amount;");
    app.close();
    primary = await startPrimary(e.db, e.arch, flags);
    const list = JSON.parse((await run(['archive', 'list', '--archive', e.arch, '--json'])).stdout);
    const lastBase = list.segments.flatMap((x: { bases: string[] }) => x.bases).pop();
    expect(BigInt(lastBase)).toBeGreaterThan(51n);
    // Retention (by hand here) removes every segment before that base.
    for (const seg of list.segments) if (BigInt(seg.lastLsn) < BigInt(lastBase)) rmSync(join(e.arch, 'segments', seg.name));
    const late = start(['standby', '--db', s.db, '--archive', s.archive, '--from', e.from, '--token-file', e.token]);
    const { code } = await Promise.race([late.exited, sleep(15_000).then(() => ({ code: -1 }))]);
    expect(code, `${late.stderr}\n${primary.stderr}`).toBe(41);
    expect(late.stderr).toMatch(/NEED_BASE: the primary's archive starts at LSN \d+; the standby needs 52/);
    expect(late.stderr).toMatch(/hint: seed the standby again/);
    expect(await stopGracefully(primary)).toBe(0);
  });
});
