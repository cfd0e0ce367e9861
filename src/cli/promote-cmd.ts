/**
 * `redoship promote` (failover) and the promotion of a running standby daemon.
 *
 * A running standby (it holds its archive's writer lock) is asked through a request file in its archive,
 *
 *   promote.request.json   { id, untilLsn | null, untilTime | null, requestedAt }
 *
 * or by `switchover` through a control request on its redo server. The daemon stops receiving, promotes its
 * files (roles/promote.ts) and goes on in the same process as the primary, serving redo on its own --listen
 * address, then answers in promote.result.json { id, ok, ... }. With no daemon running, the command promotes
 * the files itself and runs as the primary in the foreground (or exits, with --no-serve).
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RedoshipError } from '../error/index.js';
import { Archive, isProcessAlive, removeFence, type Incarnation } from '../redo/index.js';
import { pageImagesReply, promoteFiles, type PromoteResult } from '../roles/index.js';
import { STANDBY_STATUS_FILE, type StandbyHandle } from '../standby/index.js';
import type { ControlHandler } from '../transport/index.js';
import { log, primaryCommand, type PrimaryFlags } from './primary-cmd.js';
import { catchSignals, type Signals } from './signals.js';
import type { StandbyFlags } from './standby-cmd.js';
import { parseLsn, parseTime } from './units.js';

const REQUEST_FILE = 'promote.request.json';
const RESULT_FILE = 'promote.result.json';
/** How long a promote request stays valid; `redoship promote` waits at most this long by default. */
const REQUEST_TTL_MS = 120_000;

export interface PromoteRequest {
  readonly id: string;
  readonly untilLsn: string | null;
  readonly untilTime: string | null;
  /** ms since the epoch: promotion time is counted from here. */
  readonly requestedAt: number;
  readonly by: string;
}

export interface PromoteFlags {
  archive?: string;
  db?: string;
  untilLsn?: string;
  untilTime?: string;
  json?: boolean;
  serve?: boolean;
  listen?: string;
  tokenFile?: string;
  metrics?: string;
  timeout?: string;
  quiet?: boolean;
}

interface PromoteReport {
  readonly ok: boolean;
  readonly id?: string;
  readonly error?: string;
  readonly hint?: string;
  readonly incarnation?: number;
  readonly forkLsn?: string;
  readonly promoteMs?: number;
  readonly applied?: number;
  readonly setAside?: number;
  readonly setAsideDir?: string | null;
  readonly db?: string;
  readonly archive?: string;
  readonly listen?: string | null;
}

/** The standby daemon running on this archive, or null. */
function runningStandby(dir: string): { pid: number } | null {
  try {
    const pid = parseInt(readFileSync(join(dir, 'writer.lock'), 'utf8'), 10);
    if (!Number.isFinite(pid) || !isProcessAlive(pid)) return null;
    const st = JSON.parse(readFileSync(join(dir, STANDBY_STATUS_FILE), 'utf8')) as { pid?: number; role?: string };
    return st.pid === pid && st.role === 'standby' ? { pid } : null;
  } catch {
    return null;
  }
}

export async function promoteCommand(f: PromoteFlags): Promise<void> {
  if (!f.archive) throw new RedoshipError('USAGE', 'promote needs --archive (the standby archive)', 'example: redoship promote --archive ./dr-arch');
  if (f.untilLsn && f.untilTime) throw new RedoshipError('USAGE', 'give --until-lsn or --until-time, not both', 'example: redoship promote --archive ./dr-arch --until-lsn 1234');
  const untilLsn = f.untilLsn ? parseLsn(f.untilLsn, '--until-lsn') : null;
  const untilTime = f.untilTime ? parseTime(f.untilTime, '--until-time') : null;
  if (f.timeout !== undefined && !(Number(f.timeout) > 0))
    throw new RedoshipError('USAGE', `--timeout ${f.timeout}: not a number of seconds`, 'example: --timeout 60');
  const a = Archive.open(f.archive);
  const t0 = Date.now();
  const daemon = runningStandby(a.dir);
  if (daemon) {
    const req: PromoteRequest = { id: randomBytes(8).toString('hex'), untilLsn: untilLsn === null ? null : String(untilLsn), untilTime: untilTime?.toISOString() ?? null, requestedAt: t0, by: 'redoship promote' };
    writeJson(join(a.dir, REQUEST_FILE), req);
    const deadline = t0 + Math.min(REQUEST_TTL_MS, f.timeout ? Number(f.timeout) * 1000 : REQUEST_TTL_MS);
    for (;;) {
      await new Promise((r) => setTimeout(r, 25));
      const res = readJson<PromoteReport>(join(a.dir, RESULT_FILE));
      if (res?.id === req.id) {
        report(res, !!f.json);
        if (!res.ok) throw new RedoshipError('ROLE', `promotion failed: ${res.error}`, res.hint ?? 'see the standby log');
        return;
      }
      if (!isProcessAlive(daemon.pid)) throw new RedoshipError('ROLE', `the standby daemon (pid ${daemon.pid}) stopped before promoting`, 'see its log; run promote again to promote the files without it');
      if (Date.now() > deadline) throw new RedoshipError('ROLE', `the standby daemon (pid ${daemon.pid}) did not promote within ${Math.round((deadline - t0) / 1000)} s`, 'see its log');
    }
  }
  // No daemon: promote the files here, then run as the primary unless told not to.
  const signals = catchSignals();
  const r = promoteFiles({
    archive: a.dir,
    ...(f.db ? { db: f.db } : {}),
    ...(untilLsn !== null ? { untilLsn } : {}),
    ...(untilTime ? { untilTimeUs: BigInt(untilTime.getTime()) * 1000n } : {}),
    onProgress: (m) => !f.quiet && log(m),
  });
  removeFence(a.dir);
  if (f.serve === false) {
    // The connection is left to go with the process, not closed: SQLite's last close would checkpoint and
    // delete the new WAL, and the primary started next could then not prove where it stands.
    report(toReport(r, null, t0), !!f.json);
    return;
  }
  await primaryCommand(
    { db: r.db, archive: a.dir, ...(f.listen ? { listen: f.listen } : {}), ...(f.tokenFile ? { tokenFile: f.tokenFile } : {}), ...(f.metrics ? { metrics: f.metrics } : {}), ...(f.quiet ? { quiet: true } : {}) },
    signals,
    {
      afterStart: (listen) => {
        r.release();
        report(toReport(r, listen, t0), !!f.json);
      },
    },
  );
}

function toReport(r: PromoteResult, listen: string | null, t0: number, id?: string): PromoteReport {
  return {
    ok: true,
    ...(id ? { id } : {}),
    incarnation: r.incarnation.incarnation,
    forkLsn: String(r.forkLsn),
    promoteMs: Date.now() - t0,
    applied: r.applied,
    setAside: r.setAside.records.length,
    setAsideDir: r.setAside.dir,
    db: r.db,
    archive: r.archive,
    listen,
  };
}

function report(r: PromoteReport, json: boolean): void {
  if (json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else if (r.ok)
    process.stdout.write(
      `promoted ${r.db}: incarnation ${r.incarnation} forked after LSN ${r.forkLsn}; accepting writes ${r.promoteMs} ms after the request` +
        (r.applied ? `; applied ${r.applied} records first` : '') +
        (r.setAside ? `; set aside ${r.setAside} received records after the fork point in ${r.setAsideDir}` : '') +
        (r.listen ? `; serving redo on ${r.listen}` : '') +
        '\n',
    );
}

/**
 * In a standby daemon: resolves when promotion is asked for, by the request file or by a control request
 * on the daemon's redo server (which also answers `describe`, for switchover).
 */
export function watchPromoteRequests(handle: StandbyHandle, dir: string, delayMs: number): { requested: Promise<PromoteRequest>; stop(): void } {
  let resolveReq!: (r: PromoteRequest) => void;
  const requested = new Promise<PromoteRequest>((r) => (resolveReq = r));
  let done = false;
  const take = (r: PromoteRequest) => {
    if (done) return;
    done = true;
    resolveReq(r);
  };
  const handler: ControlHandler = async (op, args) => {
      const st = handle.status();
      if (op === 'describe')
        return { role: 'standby', databaseId: Archive.exists(dir) ? Archive.open(dir).identity.databaseId : null, from: st.from, receivedLsn: st.receivedLsn, confirmedLsn: st.confirmedLsn, appliedLsn: st.appliedLsn, delayMs, paused: st.paused, db: st.db, archive: dir, connected: st.connected };
      if (op === 'promote') {
        if (!st.db) throw new RedoshipError('ROLE', `the standby at ${dir} keeps no database (archive only)`, 'switch over to a standby that applies to a database');
        const lsn = typeof args.untilLsn === 'string' ? args.untilLsn : null;
        // Confirmed, not just received: a record the primary did not make durable may differ from its own.
        if (lsn !== null && BigInt(st.confirmedLsn) < BigInt(lsn))
          throw new RedoshipError('ROLE', `this standby holds LSN ${st.receivedLsn}, confirmed by its primary up to ${st.confirmedLsn}, not yet ${lsn}`, 'wait until its primary has confirmed it');
        take({ id: randomBytes(8).toString('hex'), untilLsn: lsn, untilTime: null, requestedAt: Date.now(), by: String(args.by ?? 'switchover') });
        return { accepted: true };
      }
      if (op === 'page-images') return pageImagesReply(dir, args);
      throw new RedoshipError('ROLE', `a standby does not take "${op}"`, 'send it to the primary');
    };
  const watch = () => {
    // The redo server of a standby that is being seeded starts later: hook it up as soon as it exists.
    if (handle.server && !handle.server.controlHandler) handle.server.controlHandler = handler;
    const req = readJson<PromoteRequest>(join(dir, REQUEST_FILE));
    // A request left by a promote that gave up (this daemon was down) must not fire days later.
    if (req && Date.now() - req.requestedAt < REQUEST_TTL_MS && readJson<PromoteReport>(join(dir, RESULT_FILE))?.id !== req.id) take(req);
  };
  const timer = setInterval(watch, 20);
  watch();
  return {
    requested,
    stop: () => {
      clearInterval(timer);
      if (handle.server) handle.server.controlHandler = null;
    },
  };
}

export function finishPromoteRequest(dir: string, req: PromoteRequest, r: { ok: false; error: string; hint?: string }): void {
  writeJson(join(dir, RESULT_FILE), { id: req.id, ...r });
}

/** In a standby daemon whose handle has stopped: promotes its files and runs as the primary. */
export async function runPromoted(f: StandbyFlags, req: PromoteRequest, signals: Signals): Promise<void> {
  const dir = resolve(f.archive!);
  let r: PromoteResult;
  try {
    r = promoteFiles({
      archive: dir,
      ...(f.db ? { db: f.db } : {}),
      ...(req.untilLsn ? { untilLsn: BigInt(req.untilLsn) } : {}),
      ...(req.untilTime ? { untilTimeUs: BigInt(new Date(req.untilTime).getTime()) * 1000n } : {}),
      reason: req.by === 'switchover' ? 'switchover' : 'promoted',
      onProgress: (m) => log(m),
    });
    removeFence(dir);
  } catch (e) {
    const re = e instanceof RedoshipError ? e : null;
    finishPromoteRequest(dir, req, { ok: false, error: (e as Error).message, ...(re ? { hint: re.hint } : {}) });
    throw e;
  }
  const pf: PrimaryFlags = {
    db: r.db,
    archive: dir,
    ...(f.listen ? { listen: f.listen } : {}),
    ...(f.tokenFile ? { tokenFile: f.tokenFile } : {}),
    ...(f.tlsCert ? { tlsCert: f.tlsCert } : {}),
    ...(f.tlsKey ? { tlsKey: f.tlsKey } : {}),
    ...(f.tlsCa ? { tlsCa: f.tlsCa } : {}),
    ...(f.metrics ? { metrics: f.metrics } : {}),
    ...(f.quiet ? { quiet: true } : {}),
  };
  rmSync(join(dir, REQUEST_FILE), { force: true });
  await primaryCommand(pf, signals, {
    afterStart: (listen) => {
      r.release();
      const rep = toReport(r, listen, req.requestedAt, req.id);
      writeJson(join(dir, RESULT_FILE), rep);
      log(`promoted: ${describe(r.incarnation)}; accepting writes ${rep.promoteMs} ms after the request`);
    },
  });
}

function describe(i: Incarnation): string {
  return `incarnation ${i.incarnation} forked after LSN ${i.forkLsn}`;
}

function writeJson(p: string, v: unknown): void {
  writeFileSync(`${p}.tmp`, JSON.stringify(v, null, 2) + '\n');
  renameSync(`${p}.tmp`, p);
}

function readJson<T>(p: string): T | null {
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as T;
  } catch {
    return null;
  }
}
