/**
 * The CLI as a user meets it: the README's demo, --help with an example on every command, the config file,
 * sealing by age, status.
 */
import Database from 'better-sqlite3';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { makeDb, run, sleep, startPrimary, stopGracefully, tempDir } from '../helpers/index.js';

describe('cli', () => {
  test('the demo runs a primary and a delayed standby; both end equal to what they should be', async () => {
    const dir = tempDir();
    const r = await run(['demo', '--dir', join(dir, 'demo'), '--rate', '200', '--duration', '4s', '--delay', '1s']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/primary LSN \d+ .*\| standby received \d+, applied \d+ \(delay 1\.0 s/);
    expect(r.stderr).toMatch(/rows equal app\.db/);
    expect(r.stderr).toMatch(/standby dr\.db is at LSN \d+ \(received \d+\): rows equal the primary at that LSN/);
  });

  test('every command has --help with an example', async () => {
    const all = [['demo'], ['primary'], ['standby'], ['archive', 'list'], ['archive', 'verify'], ['restore'], ['status'], ['backup'], ['list'], ['validate'], ['crosscheck'], ['catalog'], ['report'], ['delete']];
    for (const cmd of all) {
      const r = await run([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout, cmd.join(' ')).toMatch(/Example:\n {2}npx redoship /);
    }
  });

  test('primary reads a config file; flags win; unknown keys are refused', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const cfg = join(dir, 'redoship.json');
    writeFileSync(cfg, JSON.stringify({ db, archive: join(dir, 'ignored'), 'segment-age': '300ms', checkpointFrames: 500 }));
    const arch = join(dir, 'arch');
    const p = await startPrimary(db, arch, ['--config', cfg]); // --archive on the command line wins
    const app = new Database(db);
    app.prepare('INSERT INTO t (k, v) VALUES (1, x\'00\')').run();
    await sleep(1500);
    app.prepare('INSERT INTO t (k, v) VALUES (2, x\'00\')').run();
    await sleep(300);
    // sealed by age (300ms) while running, not only at shutdown
    expect(readdirSync(join(arch, 'segments')).filter((n) => n.endsWith('.seg')).length).toBeGreaterThanOrEqual(1);
    const s = await run(['status', '--archive', arch, '--json']);
    const st = JSON.parse(s.stdout);
    expect(st.primary.pid).toBe(p.child.pid);
    expect(st.lastLsn).toBe('3');
    expect(st.captureLagFrames).toBe(0);
    app.close();
    expect(await stopGracefully(p)).toBe(0);

    writeFileSync(cfg, JSON.stringify({ db, archive: arch, segmentSise: '1MB' }));
    const bad = await run(['primary', '--config', cfg]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/unknown key "segmentSise"/);
    expect(bad.stderr).toMatch(/hint: known keys/);
  });
});
