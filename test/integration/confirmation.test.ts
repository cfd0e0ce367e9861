/**
 * Confirmation (transport/protocol.ts): a primary sends redo once written, before its own sync, and confirms
 * it after. A standby keeps unconfirmed redo durably but applies and serves onward only confirmed redo; when
 * its primary lost an unconfirmed tail, the standby sets that tail aside on reconnect and follows the primary.
 * A confirmed record is never set aside.
 *
 * The window between a primary's write and its sync is a fraction of a millisecond, and losing what was
 * written in it takes a machine crash, which no test here can cause. So the first test serves a real archive
 * through a real redo server whose confirmed LSN the test holds back; the second reproduces the state a
 * power loss leaves (the primary's database and archive as they were before its last commits; the standby
 * holding those commits, unconfirmed) from copies of real files, with real processes and kill -9.
 */
import Database from 'better-sqlite3';
import fs, { cpSync, existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { startPrimary as startPrimaryInProcess, startStandby } from '../../src/index.js';
import { Archive, type Lsn } from '../../src/redo/index.js';
import { RedoServer, archiveSource } from '../../src/transport/index.js';
import { compareWithPrimary, freePort, makeDb, run, sleep, startPrimary, startStandbyProc, stopGracefully, tempDir, tokenFile, treeFingerprint, waitForStatus } from '../helpers/index.js';

function write(db: string, from: number, n: number, tag: string): void {
  const app = new Database(db, { timeout: 10_000 });
  try {
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    for (let i = from; i < from + n; i++) ins.run(i, Buffer.from(`${tag} ${i} `.repeat(20)));
  } finally {
    app.close();
  }
}

const tailLsn = (archive: string): bigint => Archive.open(archive).tail()!.lsn;

/** copy equals the primary's database page for page and by row hash, and passes integrity_check. */
function expectEqualToPrimary(db: string, copy: string): void {
  const c = compareWithPrimary(db, copy);
  expect(c.differing).toEqual([]);
  expect(c.rowsEqual).toBe(true);
  expect(c.integrity).toBe('ok');
}

/** A new database in dir and what a primary serving it on loopback takes: its token file and --listen flags. */
async function served(dir: string): Promise<{ db: string; token: string; listen: string[]; from: string }> {
  const db = join(dir, 'app.db');
  makeDb(db);
  const token = tokenFile(dir);
  const port = await freePort();
  return { db, token, listen: ['--listen', `127.0.0.1:${port}`, '--token-file', token], from: `ws://127.0.0.1:${port}` };
}

describe('confirmation', () => {
  test('a standby applies and cascades only what its primary confirmed; the rest once confirmed', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const token = tokenFile(dir);
    const p = await startPrimary(db, arch);
    write(db, 0, 40, 'a');
    expect(await stopGracefully(p)).toBe(0);

    const archive = Archive.open(arch);
    const last = archive.tail()!.lsn;
    const base = archive.latestBaseAtOrBefore(last)!;
    expect(last - base).toBeGreaterThanOrEqual(40n);
    let confirmed = base + 10n;
    const listeners = new Set<() => void>();
    const server = await RedoServer.start(
      archiveSource({ archive, incarnation: 1, lastLsn: () => last, confirmedLsn: () => confirmed, subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)) }),
      { host: '127.0.0.1', port: 0, secret: Buffer.from(readFileSync(token, 'utf8').trim()) },
    );
    const cascadePort = await freePort();
    const s1 = await startStandbyProc({ db: join(dir, 'dr.db'), archive: join(dir, 's1'), from: `ws://127.0.0.1:${server.address.port}`, token, extra: ['--listen', `127.0.0.1:${cascadePort}`] });
    const s2 = await startStandbyProc({ archive: join(dir, 's2'), from: `ws://127.0.0.1:${cascadePort}`, token });
    try {
      // s1 holds everything, durably, but applies only up to what is confirmed; s2 gets only that much.
      await waitForStatus(join(dir, 's1'), (s) => s.receivedLsn === String(last) && s.appliedLsn === String(confirmed) && s.confirmedLsn === String(confirmed));
      await waitForStatus(join(dir, 's2'), (s) => s.receivedLsn === String(confirmed));
      await sleep(1000); // time enough to apply and forward more, were it allowed
      const held = await waitForStatus(join(dir, 's1'), () => true);
      expect(held.appliedLsn).toBe(String(confirmed));
      expect(held.confirmedLsn).toBe(String(confirmed));
      expect(tailLsn(join(dir, 's1'))).toBe(last);
      expect(tailLsn(join(dir, 's2'))).toBe(confirmed);

      // Confirmed: the server says so without new redo, and both go on to the end.
      confirmed = last;
      for (const l of listeners) l();
      await waitForStatus(join(dir, 's1'), (s) => s.appliedLsn === String(last));
      await waitForStatus(join(dir, 's2'), (s) => s.receivedLsn === String(last));
      expect(await stopGracefully(s2)).toBe(0);
      expect(await stopGracefully(s1)).toBe(0);
      expectEqualToPrimary(db, join(dir, 'dr.db'));
    } finally {
      s1.child.kill('SIGKILL');
      s2.child.kill('SIGKILL');
      await server.close();
    }
  });

  test('a cascade behind a standby that connects to it is retried (UPSTREAM_BEHIND), not fatal, and serves it once caught up', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const token = tokenFile(dir);
    const secret = Buffer.from(readFileSync(token, 'utf8').trim());
    const p = await startPrimary(db, arch);
    write(db, 0, 40, 'a');
    expect(await stopGracefully(p)).toBe(0);
    const archive = Archive.open(arch);
    const last = archive.tail()!.lsn;
    let limit = archive.latestBaseAtOrBefore(last)! + 10n;
    const listeners = new Set<() => void>();
    // U1 feeds cascade B only up to `limit`; U2 feeds C everything.
    const u1 = await RedoServer.start(archiveSource({ archive, incarnation: 1, lastLsn: () => limit, subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)) }), { host: '127.0.0.1', port: 0, secret });
    const u2 = await RedoServer.start(archiveSource({ archive, incarnation: 1, lastLsn: () => last, subscribe: () => () => {} }), { host: '127.0.0.1', port: 0, secret });
    const cArch = join(dir, 'c');
    const bPort = await freePort();
    let c = await startStandbyProc({ archive: cArch, from: `ws://127.0.0.1:${u2.address.port}`, token });
    const b = await startStandbyProc({ archive: join(dir, 'b'), from: `ws://127.0.0.1:${u1.address.port}`, token, extra: ['--listen', `127.0.0.1:${bPort}`] });
    try {
      await waitForStatus(cArch, (st) => String(st.receivedLsn) === String(last));
      expect(await stopGracefully(c)).toBe(0);
      await waitForStatus(join(dir, 'b'), (st) => String(st.receivedLsn) === String(limit) && st.confirmedLsn === String(limit));
      c = await startStandbyProc({ archive: cArch, from: `ws://127.0.0.1:${bPort}`, token });
      await c.waitFor(/UPSTREAM_BEHIND/);
      limit = last;
      for (const l of listeners) l();
      await waitForStatus(join(dir, 'b'), (st) => st.confirmedLsn === String(last));
      await waitForStatus(cArch, (st) => st.connected === true, 40_000);
      expect(c.child.exitCode).toBe(null);
      expect(await stopGracefully(c)).toBe(0);
      expect(await stopGracefully(b)).toBe(0);
      expect(tailLsn(cArch)).toBe(last);
    } finally {
      c.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
      await u1.close();
      await u2.close();
    }
  });

  test('a primary that lost an unconfirmed tail: the standby sets it aside and follows; a confirmed tail is never set aside', async () => {
    const dir = tempDir();
    const { db, token, listen, from } = await served(dir);
    const arch = join(dir, 'arch');
    const sArch = join(dir, 'dr-arch');
    const drDb = join(dir, 'dr.db');

    // 1. Commits the standby holds confirmed. Then a copy of the primary's files as they are now: what its
    //    disk would hold after a power loss that took everything written after this point.
    let p = await startPrimary(db, arch, listen);
    // Delayed: it applies nothing, so that nothing it later sets aside was applied.
    let s = await startStandbyProc({ db: drDb, archive: sArch, from, token, extra: ['--delay', '1h'] });
    write(db, 0, 20, 'kept');
    const a = 21n; // the base, then one record per commit
    await waitForStatus(sArch, (st) => String(st.receivedLsn) === String(a) && st.confirmedLsn === String(a));
    expect(await stopGracefully(p)).toBe(0);
    expect(tailLsn(arch)).toBe(a);
    const snap = join(dir, 'snap');
    for (const f of readdirSync(dir).filter((f) => f.startsWith('app.db') && !f.endsWith('-shm') && !f.endsWith('.lock'))) cpSync(join(dir, f), join(snap, f));
    cpSync(arch, join(snap, 'arch'), { recursive: true });

    // 2. More commits reach the standby; then the primary dies, and its disk loses them (the copy comes back).
    p = await startPrimary(db, arch, listen);
    write(db, 100, 15, 'lost');
    const b = a + 15n;
    await waitForStatus(sArch, (st) => String(st.receivedLsn) === String(b) && st.confirmedLsn === String(b));
    p.child.kill('SIGKILL');
    await p.exited;
    expect(await stopGracefully(s)).toBe(0);
    for (const f of readdirSync(dir).filter((f) => f.startsWith('app.db'))) rmSync(join(dir, f));
    rmSync(arch, { recursive: true });
    for (const f of readdirSync(snap).filter((f) => f.startsWith('app.db'))) cpSync(join(snap, f), join(dir, f));
    cpSync(join(snap, 'arch'), arch, { recursive: true });

    // 3. The primary goes on from its copy: other commits under the LSNs the standby holds.
    p = await startPrimary(db, arch, listen);
    write(db, 200, 25, 'new');
    try {
      // The standby's a+1..b were confirmed (the primary synced them before it died): never set aside.
      const segments = Archive.open(sArch).segmentsDir;
      const before = treeFingerprint(segments);
      const confirmedFile = readFileSync(join(sArch, 'confirmed.json'), 'utf8');
      expect(confirmedFile).toContain(`"${b}"`);
      s = await startStandbyProc({ db: drDb, archive: sArch, from, token, extra: ['--delay', '1h'] });
      expect((await s.exited).code).not.toBe(0);
      expect(s.stderr).toMatch(/DIVERGED/);
      expect(s.stderr).not.toMatch(/set aside/);
      expect(treeFingerprint(segments)).toBe(before);
      expect(readFileSync(join(sArch, 'confirmed.json'), 'utf8')).toBe(confirmedFile);
      expect(existsSync(join(sArch, 'diverged'))).toBe(false);

      // Had the primary died before syncing them, it would never have confirmed them: the standby's record
      // of what was confirmed says a. Now they are set aside, kept, and the standby follows the primary.
      writeFileSync(join(sArch, 'confirmed.json'), `{ "lsn": "${a}" }\n`);
      s = await startStandbyProc({ db: drDb, archive: sArch, from, token });
      await s.waitFor(new RegExp(`set aside LSN ${a + 1n}\\.\\.${b}`));
      const end = tailLsn(arch);
      await waitForStatus(sArch, (st) => st.appliedLsn === String(end));
      expect(await stopGracefully(s)).toBe(0);
      expect(await stopGracefully(p)).toBe(0);
      expectEqualToPrimary(db, drDb);
      const dr = new Database(drDb, { readonly: true });
      expect((dr.prepare("SELECT count(*) AS n FROM t WHERE CAST(v AS TEXT) LIKE 'lost %'").get() as { n: number }).n).toBe(0);
      dr.close();
      const kept = readdirSync(join(sArch, 'diverged'));
      expect(kept.length).toBe(1);
      const records = JSON.parse(readFileSync(join(sArch, 'diverged', kept[0]!, 'records.json'), 'utf8')) as { records: unknown[] };
      expect(records.records.length).toBe(15);
      expect(existsSync(join(sArch, 'confirmed.json'))).toBe(true);
    } finally {
      p.child.kill('SIGKILL');
      s.child.kill('SIGKILL');
    }
  });
});

describe('sealing on a standby', () => {
  test('segments are sealed by size once confirmed, so they stay near --segment-size', async () => {
    const dir = tempDir();
    const { db, token, listen, from } = await served(dir);
    const sArch = join(dir, 'dr-arch');
    const p = await startPrimary(db, join(dir, 'arch'), listen);
    const s = await startStandbyProc({ archive: sArch, from, token, extra: ['--segment-size', '1MB'] });
    try {
      const app = new Database(db);
      const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      for (let i = 0; i < 2500; i++) ins.run(i, Buffer.alloc(6000, i & 0xff));
      app.close();
      const end = 2501n;
      await waitForStatus(sArch, (st) => String(st.receivedLsn) === String(end) && st.confirmedLsn === String(end));
      expect(await stopGracefully(s)).toBe(0);
      const segs = Archive.open(sArch).segments();
      const sealed = segs.filter((x) => x.sealed);
      expect(sealed.length).toBeGreaterThanOrEqual(5);
      // Past the size by at most one redo message (4 MiB: the standby writes a message whole) and what came
      // before the confirmation of the record that filled it.
      for (const x of sealed.slice(1)) expect(x.bytes).toBeLessThan(5.5 * 1024 * 1024);
      expect(segs.at(-1)!.lastLsn).toBe(end);
    } finally {
      s.child.kill('SIGKILL');
      p.child.kill('SIGKILL');
    }
  });
});

describe('a damaged confirmed.json', () => {
  test('the standby refuses to start, says which file and what to do, and changes nothing', async () => {
    const dir = tempDir();
    const { db, token, listen, from } = await served(dir);
    const sArch = join(dir, 'dr-arch');
    const p = await startPrimary(db, join(dir, 'arch'), listen);
    try {
      const s = await startStandbyProc({ db: join(dir, 'dr.db'), archive: sArch, from, token });
      write(db, 0, 5, 'a');
      await waitForStatus(sArch, (st) => String(st.receivedLsn) === '6' && st.appliedLsn === '6');
      expect(await stopGracefully(s)).toBe(0);
      writeFileSync(join(sArch, 'confirmed.json'), '{ "lsn": 12');
      const before = treeFingerprint(sArch);
      const drBefore = readFileSync(join(dir, 'dr.db'));
      const r = await run(['standby', '--db', join(dir, 'dr.db'), '--archive', sArch, '--from', from, '--token-file', token]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/confirmed\.json is not a valid confirmed-LSN file/);
      expect(r.stderr).toMatch(/redoship status/);
      expect(treeFingerprint(sArch)).toBe(before);
      expect(readFileSync(join(dir, 'dr.db')).equals(drBefore)).toBe(true);
    } finally {
      p.child.kill('SIGKILL');
    }
  });
});

describe('confirmation by a primary in this process', () => {
  test('each commit is confirmed right after the primary syncs it, not with the next redo or heartbeat', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const secret = Buffer.from(readFileSync(tokenFile(dir), 'utf8').trim());
    const primary = await startPrimaryInProcess({ db, archive: join(dir, 'arch'), listen: { host: '127.0.0.1', port: 0 }, secret });
    const standby = await startStandby({ archive: join(dir, 'dr-arch'), from: `ws://127.0.0.1:${primary.server!.address.port}`, secret });
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    try {
      const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      for (let i = 0; i < 10; i++) {
        ins.run(i, Buffer.alloc(100, i));
        const l = await primary.waitForStandbys(1, 5000);
        // Commits come 150 ms apart, so the idle heartbeat (1 s) never confirms; the next redo comes too late.
        const deadline = performance.now() + 100;
        while (BigInt(standby.status().confirmedLsn) < l) {
          if (performance.now() > deadline) throw new Error(`commit ${i}: LSN ${l} not confirmed within 100 ms (standby: ${standby.status().confirmedLsn})`);
          await sleep(2);
        }
        await sleep(150);
      }
    } finally {
      await standby.stop();
      await primary.stop();
      app.close();
    }
  });

  test('a sync that fails after its records were sent: the standby sets them aside, and waitForStandbys waits for them written again', async () => {
    // A real fdatasync failure needs a failing disk (dm-error, dm-flakey), and this VM's kernel has no
    // device-mapper (`dmsetup targets`: no such device). So here, and
    // only here, fdatasyncSync of the primary's archive segment fails once with EIO, in this process (where
    // the primary runs; the standby is a process of its own). It first waits 100 ms, so that the records sent
    // before it reach the standby's archive.
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const sArch = join(dir, 'dr-arch');
    makeDb(db);
    const token = tokenFile(dir);
    const secret = Buffer.from(readFileSync(token, 'utf8').trim());
    const realSync = fs.fdatasyncSync;
    let failNext = false;
    fs.fdatasyncSync = (fd: number) => {
      if (failNext && readlinkSync(`/proc/self/fd/${fd}`).startsWith(join(realpathSync(arch), 'segments'))) {
        failNext = false;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
      }
      realSync(fd);
    };
    syncBuiltinESMExports();
    const warnings: string[] = [];
    const primary = await startPrimaryInProcess({ db, archive: arch, listen: { host: '127.0.0.1', port: 0 }, secret, onEvent: (e) => e.type === 'warning' && warnings.push(e.message) });
    const s = await startStandbyProc({ db: join(dir, 'dr.db'), archive: sArch, from: `ws://127.0.0.1:${primary.server!.address.port}`, token });
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    try {
      const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      for (let i = 0; i < 5; i++) ins.run(i, Buffer.from(`before ${i}`));
      const l = await primary.waitForStandbys(1, 10_000);

      failNext = true;
      ins.run(100, Buffer.from('written, sent, never synced'));
      for (let t = 0; failNext; t++) {
        if (t > 500) throw new Error('the primary never synced its archive');
        await sleep(10);
      }
      // Captured again (waitForStandbys captures first), under the same LSN with another commit time, and
      // waited for until the standby holds that record, not the one it got first.
      const again = await primary.waitForStandbys(1, 10_000);
      expect(again).toBe(l + 1n);
      const primaryTime = Archive.open(arch).commitTimeOf(again as Lsn);
      expect(Archive.open(sArch).commitTimeOf(again as Lsn)).toBe(primaryTime);
      expect(warnings.join('\n')).toMatch(/EIO/);
      expect(warnings.join('\n')).toMatch(/dropping standby/);

      for (let i = 200; i < 210; i++) ins.run(i, Buffer.from(`after ${i}`));
      const end = await primary.waitForStandbys(1, 10_000);
      await waitForStatus(sArch, (st) => st.appliedLsn === String(end));
      expect(await stopGracefully(s)).toBe(0);
      await s.waitFor(new RegExp(`set aside LSN ${l + 1n}\\.\\.${l + 1n}`), 1);
      const kept = readdirSync(join(sArch, 'diverged'));
      expect(kept.length).toBe(1);
      const records = JSON.parse(readFileSync(join(sArch, 'diverged', kept[0]!, 'records.json'), 'utf8')) as { records: Array<{ lsn: string }> };
      expect(records.records.map((r) => r.lsn)).toEqual([String(l + 1n)]);
      // The segment that held the record moved as it was, open: it was never sealed with it.
      expect(readdirSync(join(sArch, 'diverged', kept[0]!)).filter((n) => !n.endsWith('.json')).every((n) => n.endsWith('.open'))).toBe(true);
    } finally {
      fs.fdatasyncSync = realSync;
      syncBuiltinESMExports();
      s.child.kill('SIGKILL');
      await primary.stop();
      app.close();
    }
    expectEqualToPrimary(db, join(dir, 'dr.db'));
  });
});
