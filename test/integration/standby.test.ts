/**
 * End to end on loopback with real processes: a writer on the primary, two standbys (one delayed by a few
 * seconds), reader processes on each standby looping over an invariant query while redo is applied.
 *
 * Checks: readers never see a half-applied transaction; the delayed standby never shows a transaction
 * younger than the delay (within TOLERANCE_MS) and always shows every one older; both standbys end equal to
 * the primary page for page and by row hash; each standby archive restores to the same database alone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Archive, lsn } from '../../src/redo/index.js';
import {
  compareWithPrimary,
  freePort,
  makeDb,
  run,
  sleep,
  startPrimary,
  startReader,
  startStandbyProc,
  startWorkload,
  stopGracefully,
  tempDir,
  tokenFile,
  waitForStatus,
} from '../helpers/index.js';

/**
 * How late a due transaction may appear on the delayed standby: the apply timer, a batch in progress (a
 * VACUUM rewrites the whole file), and 7 busy processes sharing 2 cores with the rest of the suite (seen:
 * 240 ms typical worst, 505 ms once under a full parallel run). Early is never allowed.
 */
const TOLERANCE_MS = 1000;
const DELAY_MS = 3000;

describe('standbys', () => {
  test('two standbys, one delayed: readers see only whole transactions, the delay holds, both end equal', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const token = tokenFile(dir);
    makeDb(db);
    const port = await freePort();
    const primary = await startPrimary(db, arch, ['--listen', `127.0.0.1:${port}`, '--token-file', token]);
    const from = `ws://127.0.0.1:${port}`;
    const a = { db: join(dir, 'a.db'), archive: join(dir, 'a-arch') };
    const b = { db: join(dir, 'b.db'), archive: join(dir, 'b-arch') };
    const sa = await startStandbyProc({ ...a, from, token });
    const sb = await startStandbyProc({ ...b, from, token, extra: ['--delay', `${DELAY_MS}ms`] });
    const commitLog = join(dir, 'commits.log');
    const samples = join(dir, 'b-samples.log');
    const writer = startWorkload(db, { seed: 5, mix: 'stress', rate: 150, 'duration-ms': 6000, 'counter-log': commitLog });
    const ra = startReader(a.db, { 'interval-ms': 2 });
    const rb = startReader(b.db, { samples, 'interval-ms': 5 });
    const { commits } = await writer.result();
    const last = String(BigInt(commits) + 1n); // LSN 1 is the base
    await waitForStatus(a.archive, (s) => s.appliedLsn === last, 20_000);
    await waitForStatus(b.archive, (s) => s.appliedLsn === last, 20_000);
    const [resA, resB] = [await ra.result(), await rb.result()];
    expect(resA.violations, resA.firstViolations.join('\n')).toBe(0);
    expect(resB.violations, resB.firstViolations.join('\n')).toBe(0);
    expect(resA.reads).toBeGreaterThan(100);
    expect(resB.reads).toBeGreaterThan(100);

    // The delayed standby, as its reader saw it: at wall time t it showed counter n. Commit i (LSN i + 2 in
    // the archive; LSN 1 is the base) left the counter at counter[i] (a VACUUM leaves it as it was).
    // Never younger than the delay: the first commit that set the counter to n began, by the writer's own
    // clock, at least the delay before t (it committed after it began, and the archive's commit time, when
    // the primary captured it, is later still). Never missing an older one: every commit whose archived commit time is at least
    // delay + TOLERANCE before t has a counter <= n.
    const log = readFileSync(commitLog, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number) as [number, number, number]);
    const beganMs = log.map(([us]) => us / 1000);
    const counter = log.map(([, , n]) => n);
    const archived = Archive.open(arch);
    const archiveMs: number[] = [];
    for (const r of archived.records(lsn(2))) archiveMs.push(Number(r.commitTimeUs) / 1000);
    expect(archiveMs.length).toBe(log.length);
    let checked = 0;
    let earliest = -Infinity;
    let latest = -Infinity;
    for (const line of readFileSync(samples, 'utf8').trim().split('\n')) {
      const [t, n] = line.split(' ').map(Number) as [number, number];
      const first = counter.indexOf(n);
      if (first >= 0) {
        earliest = Math.max(earliest, beganMs[first]! - (t - DELAY_MS));
        expect(beganMs[first]!, `showed counter ${n} at ${t}`).toBeLessThanOrEqual(t - DELAY_MS);
      }
      for (let i = 0; i < archiveMs.length && archiveMs[i]! <= t - DELAY_MS; i++)
        if (counter[i]! > n) {
          latest = Math.max(latest, t - DELAY_MS - archiveMs[i]!);
          expect(archiveMs[i]!, `at ${t}: counter ${counter[i]} (commit ${i + 1}) was due but ${n} shown`).toBeGreaterThan(t - DELAY_MS - TOLERANCE_MS);
          break;
        }
      checked++;
    }
    console.log(`delayed standby: shown at the earliest ${(-earliest).toFixed(1)} ms after its delay; a due commit missing for at most ${latest.toFixed(1)} ms`);
    expect(checked).toBeGreaterThan(100);

    const st = await waitForStatus(arch, (s) => s.standbys?.length === 2);
    expect(st.standbys.map((x: { durableLsn: string }) => x.durableLsn)).toEqual([last, last]);
    for (const p of [sa, sb]) expect(await stopGracefully(p)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    for (const s of [a, b]) {
      const cmp = compareWithPrimary(db, s.db);
      expect(cmp.differing, s.db).toEqual([]);
      expect(cmp.rowsEqual).toBe(true);
      expect(cmp.integrity).toBe('ok');
      // The DR site's archive alone restores the database.
      const out = join(dir, `from-${s.archive.split('/').pop()}.db`);
      const r = await run(['restore', '--archive', s.archive, '--to', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(compareWithPrimary(db, out).differing).toEqual([]);
    }
  });

  test('pause keeps receiving; apply --until recovers to just before a mistake; resume catches up', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const token = tokenFile(dir);
    makeDb(db);
    const port = await freePort();
    const primary = await startPrimary(db, arch, ['--listen', `127.0.0.1:${port}`, '--token-file', token]);
    const s = { db: join(dir, 'dr.db'), archive: join(dir, 'dr-arch') };
    const sp = await startStandbyProc({ ...s, from: `ws://127.0.0.1:${port}`, token, extra: ['--delay', '1h'] });
    const w1 = startWorkload(db, { seed: 1, count: 200 });
    await w1.result();
    // The mistake: a DELETE without WHERE, at LSN 202.
    const Database = (await import('better-sqlite3')).default;
    const app = new Database(db);
    const before = app.prepare('SELECT count(*) FROM t').pluck().get() as number;
    app.exec('DELETE FROM t');
    app.close();
    const w2 = startWorkload(db, { seed: 2, count: 50 });
    await w2.result();
    await waitForStatus(s.archive, (x) => x.receivedLsn === '252');
    let st = await waitForStatus(s.archive, () => true);
    expect(st.appliedLsn).toBe(null); // an hour's delay: not even the base is due, so no copy exists yet
    const p = await run(['standby', 'pause', '--archive', s.archive]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/apply paused/);
    const u = await run(['standby', 'apply', '--archive', s.archive, '--until-lsn', '201']);
    expect(u.code, u.stderr).toBe(0);
    st = await waitForStatus(s.archive, (x) => x.appliedLsn === '201');
    await sleep(600);
    st = await waitForStatus(s.archive, () => true);
    expect(st.appliedLsn).toBe('201'); // stays there
    const check = new Database(s.db, { readonly: true });
    expect(check.prepare('SELECT count(*) FROM t').pluck().get()).toBe(before);
    check.close();
    const r = await run(['standby', 'resume', '--archive', s.archive]);
    expect(r.code).toBe(0);
    expect((await waitForStatus(s.archive, () => true)).appliedLsn).toBe('201'); // the delay still holds
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
  });
});

describe('cascade, archive-only DR, metrics', () => {
  test('a standby serves redo onward; an archive-only DR site restores; Prometheus metrics show lag', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const token = tokenFile(dir);
    makeDb(db);
    const [port, cascadePort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const primary = await startPrimary(db, arch, ['--listen', `127.0.0.1:${port}`, '--token-file', token, '--metrics', `127.0.0.1:${metricsPort}`]);
    // A (with a database) serves onward; B follows A; C is an archive-only DR destination following A.
    const a = { db: join(dir, 'a.db'), archive: join(dir, 'a-arch') };
    const b = { db: join(dir, 'b.db'), archive: join(dir, 'b-arch') };
    const c = { archive: join(dir, 'c-arch') };
    const standbyMetricsPort = await freePort();
    const sa = await startStandbyProc({ ...a, from: `ws://127.0.0.1:${port}`, token, extra: ['--listen', `127.0.0.1:${cascadePort}`, '--metrics', `127.0.0.1:${standbyMetricsPort}`] });
    const writer = startWorkload(db, { seed: 9, rate: 200, 'duration-ms': 2500 });
    await sleep(500);
    const sb = await startStandbyProc({ ...b, from: `ws://127.0.0.1:${cascadePort}`, token });
    const sc = await startStandbyProc({ ...c, from: `ws://127.0.0.1:${cascadePort}`, token });
    const { commits } = await writer.result();
    const last = String(BigInt(commits) + 1n);
    await waitForStatus(b.archive, (x) => x.appliedLsn === last);
    await waitForStatus(c.archive, (x) => x.receivedLsn === last);
    const cascade = await waitForStatus(a.archive, (x) => x.standbys?.length === 2);
    expect(cascade.standbys.map((x: { durableLsn: string }) => x.durableLsn)).toEqual([last, last]);

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^redoship_primary_last_lsn ${last}$`, 'm'));
    expect(metrics).toMatch(/^redoship_incarnation 1$/m);
    expect(metrics).toMatch(/^# TYPE redoship_standby_lag_records gauge$/m);
    expect(metrics).toMatch(new RegExp(`^redoship_standby_durable_lsn\\{standby="[^"]+",remote="[^"]+"\\} ${last}$`, 'm'));
    // The standby's own endpoint: what it received, what its primary confirmed, what it applied.
    await waitForStatus(a.archive, (x) => x.appliedLsn === last);
    const own = await (await fetch(`http://127.0.0.1:${standbyMetricsPort}/metrics`)).text();
    for (const name of ['received', 'confirmed', 'applied']) expect(own).toMatch(new RegExp(`^redoship_standby_${name}_lsn ${last}$`, 'm'));

    for (const p of [sb, sc, sa]) expect(await stopGracefully(p)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
    const cmp = compareWithPrimary(db, b.db);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    const out = join(dir, 'from-c.db');
    const r = await run(['restore', '--archive', c.archive, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(compareWithPrimary(db, out).differing).toEqual([]);
  });
});

describe('a short secret', () => {
  test('works on both sides with a loud warning (both sides only need the same secret)', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const token = join(dir, 'secret');
    writeFileSync(token, 'hunter2\n');
    const port = await freePort();
    const primary = await startPrimary(db, join(dir, 'arch'), ['--listen', `127.0.0.1:${port}`, '--token-file', token]);
    expect(primary.stderr).toMatch(/warning: the secret in .* is only 7 bytes/);
    const s = { archive: join(dir, 'dr-arch') };
    const sp = await startStandbyProc({ ...s, from: `ws://127.0.0.1:${port}`, token });
    expect(sp.stderr).toMatch(/warning: the secret in .* is only 7 bytes/);
    await startWorkload(db, { seed: 1, count: 20 }).result();
    await waitForStatus(s.archive, (x) => x.receivedLsn === '21');
    expect(await stopGracefully(sp)).toBe(0);
    expect(await stopGracefully(primary)).toBe(0);
  });
});
