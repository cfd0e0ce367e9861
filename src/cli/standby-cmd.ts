import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { RedoshipError } from '../error/index.js';
import { startMetricsServer, type Metric } from '../log/index.js';
import { Archive } from '../redo/index.js';
import { STANDBY_STATUS_FILE, readControl, startStandby, writeControl, type StandbyStatus } from '../standby/index.js';
import { reportError } from './main.js';
import { hostPort, readSecret, readTlsFile } from './net-flags.js';
import { catchSignals, type Signals } from './signals.js';
import { finishPromoteRequest, runPromoted, watchPromoteRequests } from './promote-cmd.js';
import { log } from './primary-cmd.js';
import { parseDuration, parseLsn, parseTime, parseSize } from './units.js';

export interface StandbyFlags {
  db?: string;
  archive?: string;
  from?: string;
  tokenFile?: string;
  delay?: string;
  applyInterval?: string;
  name?: string;
  listen?: string;
  metrics?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  segmentSize?: string;
  segmentAge?: string;
  untilLsn?: string;
  untilTime?: string;
  config?: string;
  quiet?: boolean;
  json?: boolean;
}

const KEYS = ['db', 'archive', 'from', 'tokenFile', 'delay', 'applyInterval', 'name', 'listen', 'metrics', 'tlsCa', 'tlsCert', 'tlsKey', 'segmentSize', 'segmentAge', 'quiet'] as const;

export async function standbyCommand(verb: string | undefined, flags: StandbyFlags, inherited?: Signals): Promise<void> {
  if (verb === 'pause' || verb === 'resume' || verb === 'apply') return controlCommand(verb, flags);
  if (verb !== undefined)
    throw new RedoshipError('USAGE', `unknown standby action "${verb}"`, 'use: redoship standby [pause|resume|apply] ...');
  const signals = inherited ?? catchSignals();
  const file = flags.config ? loadConfig(flags.config, KEYS) : {};
  const f = { ...file, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) } as StandbyFlags;
  if (!f.archive || !f.from)
    throw new RedoshipError('USAGE', 'standby needs --archive and --from', 'example: redoship standby --db dr.db --archive ./dr-arch --from ws://127.0.0.1:7400 --token-file secret');
  if (!/^wss?:\/\//.test(f.from)) throw new RedoshipError('USAGE', `--from ${f.from}: not a ws:// or wss:// URL`, 'write it like --from ws://primary-host:7400');
  const secret = readSecret(f.tokenFile, 'standby');
  const quiet = String(f.quiet) === 'true';
  const ca = readTlsFile(f.tlsCa, '--tls-ca');
  const cert = readTlsFile(f.tlsCert, '--tls-cert');
  const key = readTlsFile(f.tlsKey, '--tls-key');
  const listen = f.listen ? hostPort(f.listen, '--listen') : undefined;
  const handle = await startStandby({
    ...(f.db ? { db: f.db } : {}),
    archive: f.archive,
    from: f.from,
    secret,
    ...(f.name ? { name: f.name } : {}),
    delayMs: f.delay ? parseDuration(f.delay, '--delay') : 0,
    ...(f.applyInterval ? { applyIntervalMs: parseDuration(f.applyInterval, '--apply-interval') } : {}),
    ...(ca || (cert && key) ? { tls: { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}),
    ...(listen ? { listen: { ...listen, ...(cert && key && f.listen ? { tls: { cert, key, ...(ca ? { ca } : {}) } } : {}) } } : {}),
    ...(f.segmentSize ? { segmentBytes: parseSize(f.segmentSize, '--segment-size') } : {}),
    ...(f.segmentAge ? { segmentAgeMs: parseDuration(f.segmentAge, '--segment-age') } : {}),
    onEvent: (e) => (e.type === 'warning' ? log(`warning: ${e.message}`) : !quiet && log(e.message)),
  });
  const metrics = f.metrics ? await startMetricsServer(...Object.values(hostPort(f.metrics, '--metrics')) as [string, number], () => standbyMetrics(handle.status())) : null;
  if (!quiet) log(`standby: receiving from ${f.from} into ${resolve(f.archive)}${f.db ? `, applying to ${resolve(f.db)} with a delay of ${f.delay ?? '0s'}` : ' (archive only)'}`);
  // Promotion, asked for by `redoship promote` (a request file) or by `switchover` (a control request).
  const promotion = watchPromoteRequests(handle, resolve(f.archive), f.delay ? parseDuration(f.delay, '--delay') : 0);
  const why = await Promise.race([signals.next, handle.failed.then((e) => e), promotion.requested]);
  promotion.stop();
  if (why instanceof Error) process.exitCode = reportError(why);
  else if (typeof why === 'string' && !quiet) log(`${why}: stopping`);
  try {
    await metrics?.close();
    await handle.stop();
  } catch (e) {
    process.exitCode = reportError(e);
    if (typeof why === 'object' && !(why instanceof Error)) finishPromoteRequest(resolve(f.archive), why, { ok: false, error: (e as Error).message });
    return;
  }
  if (typeof why === 'object' && !(why instanceof Error)) await runPromoted(f, why, signals);
}

function standbyMetrics(s: StandbyStatus): Metric[] {
  const g = (name: string, help: string, value: number | null): Metric => ({ name, help, type: 'gauge', samples: value === null ? [] : [{ value }] });
  return [
    g('redoship_standby_connected', '1 when connected to the primary', s.connected ? 1 : 0),
    g('redoship_standby_received_lsn', 'Last LSN durable in the standby archive', Number(s.receivedLsn)),
    g('redoship_standby_confirmed_lsn', 'Last received LSN the primary confirmed durable (what may be applied)', Number(s.confirmedLsn)),
    g('redoship_standby_applied_lsn', 'Last LSN applied to the standby database', s.appliedLsn === null ? null : Number(s.appliedLsn)),
    g('redoship_standby_primary_lsn', "The primary's last LSN, as last heard", Number(s.primaryLastLsn)),
    g('redoship_standby_receive_lag_records', 'Primary last LSN minus received LSN', Number(s.receiveLagRecords)),
    g('redoship_standby_apply_lag_records', 'Received but not yet applied records', s.applyLagRecords === null ? null : Number(s.applyLagRecords)),
    g('redoship_standby_apply_lag_seconds', 'Now minus the commit time of the last applied record', s.applyLagMs === null ? null : s.applyLagMs / 1000),
    g('redoship_standby_delay_seconds', 'Configured apply delay', s.delayMs / 1000),
    g('redoship_standby_paused', '1 when apply is paused', s.paused ? 1 : 0),
    g('redoship_standby_clock_skew_seconds', 'Primary clock minus standby clock (includes one-way delay)', s.clockSkewMs / 1000),
  ];
}

/** pause / resume / apply --until: writes the control file; a running standby acts on it within 200 ms. */
async function controlCommand(verb: 'pause' | 'resume' | 'apply', f: StandbyFlags): Promise<void> {
  if (!f.archive) throw new RedoshipError('USAGE', `standby ${verb} needs --archive`, `example: redoship standby ${verb} --archive ./dr-arch`);
  const a = Archive.open(f.archive);
  const c = readControl(a.dir);
  if (verb === 'pause') writeControl(a.dir, { ...c, paused: true });
  else if (verb === 'resume') writeControl(a.dir, { paused: false, untilLsn: null, untilTimeUs: null });
  else {
    if (!f.untilLsn && !f.untilTime)
      throw new RedoshipError('USAGE', 'standby apply needs --until-lsn N or --until-time ISO', 'example: redoship standby apply --archive ./dr-arch --until-lsn 1234');
    const untilLsn = f.untilLsn ? parseLsn(f.untilLsn, '--until-lsn') : null;
    const untilTimeUs = f.untilTime ? BigInt(parseTime(f.untilTime, '--until-time').getTime()) * 1000n : null;
    writeControl(a.dir, { paused: false, untilLsn, untilTimeUs });
  }
  // Wait for a running standby to act on it, and report where it stands.
  const statusPath = join(a.dir, STANDBY_STATUS_FILE);
  let st: StandbyStatus | null = null;
  const deadline = Date.now() + (verb === 'apply' ? 60_000 : 3_000);
  const since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(statusPath)) break;
    try {
      st = JSON.parse(readFileSync(statusPath, 'utf8')) as StandbyStatus;
    } catch {
      continue;
    }
    if (new Date(st.updatedAt).getTime() < since + 250) continue;
    if (verb === 'pause' && st.paused) break;
    if (verb === 'resume' && !st.paused && st.untilLsn === null) break;
    if (verb === 'apply' && (st.nextApplyLsn === null || (st.untilLsn !== null && BigInt(st.appliedLsn ?? 0) >= BigInt(st.untilLsn)) || (st.untilTime !== null && st.nextApplyAt !== null))) break;
  }
  const out = {
    action: verb,
    running: st !== null && Date.now() - new Date(st.updatedAt).getTime() < 3000,
    paused: verb === 'pause',
    appliedLsn: st?.appliedLsn ?? null,
    receivedLsn: st?.receivedLsn ?? null,
    untilLsn: f.untilLsn ?? null,
    untilTime: f.untilTime ?? null,
  };
  if (f.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else
    process.stdout.write(
      `${verb === 'pause' ? 'apply paused' : verb === 'resume' ? 'apply resumed' : `applying up to ${f.untilLsn ? `LSN ${f.untilLsn}` : f.untilTime}, then pausing`}` +
        (out.running ? `; applied LSN ${out.appliedLsn}, received LSN ${out.receivedLsn}` : '; no standby is running on this archive: it takes effect when one starts') +
        '\n',
    );
}
