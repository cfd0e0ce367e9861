import { loadConfig } from '../config/index.js';
import { RedoshipError } from '../error/index.js';
import { startPrimary, type CaptureEvent } from '../primary/index.js';
import { reportError } from './main.js';
import { hostPort, readSecret, readTlsFile } from './net-flags.js';
import { catchSignals, type Signals } from './signals.js';
import { standbyCommand } from './standby-cmd.js';
import { serveRoleRequests } from '../roles/index.js';
import { Archive, type Lsn } from '../redo/index.js';
import { Applier } from '../standby/index.js';
import { serveBackupRequests, startRemoteArchiving } from './backup-cmd.js';
import { parseCount, parseDuration, parseSize } from './units.js';

function missing(flag: string): never {
  throw new RedoshipError('USAGE', `wss:// needs both --tls-cert and --tls-key (${flag} is missing)`, 'give both files, PEM encoded');
}

export interface PrimaryFlags {
  db?: string;
  archive?: string;
  checkpointFrames?: string;
  segmentSize?: string;
  segmentAge?: string;
  lockTimeout?: string;
  adopt?: boolean;
  quiet?: boolean;
  config?: string;
  listen?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  metrics?: string;
  archiveTo?: string;
}

const PRIMARY_KEYS = ['db', 'archive', 'checkpointFrames', 'segmentSize', 'segmentAge', 'lockTimeout', 'adopt', 'quiet', 'listen', 'tokenFile', 'tlsCert', 'tlsKey', 'tlsCa', 'metrics', 'archiveTo'] as const;

/** Flags over config file over defaults; db and archive required from one or the other. */
function resolvePrimaryFlags(f: PrimaryFlags): Required<Omit<PrimaryFlags, 'config' | 'listen' | 'tokenFile' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'metrics' | 'archiveTo'>> & Pick<PrimaryFlags, 'listen' | 'tokenFile' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'metrics' | 'archiveTo'> {
  const file = f.config ? loadConfig(f.config, PRIMARY_KEYS) : {};
  const pick = (k: (typeof PRIMARY_KEYS)[number], dflt: string): string => {
    const v = f[k] ?? file[k];
    return v === undefined ? dflt : String(v);
  };
  const db = pick('db', '');
  const archive = pick('archive', '');
  if (!db || !archive)
    throw new RedoshipError('USAGE', `primary needs --db and --archive${f.config ? ` (on the command line or in ${f.config})` : ''}`, 'example: redoship primary --db app.db --archive ./arch');
  return {
    db,
    archive,
    checkpointFrames: pick('checkpointFrames', '1000'),
    segmentSize: pick('segmentSize', '64MB'),
    segmentAge: pick('segmentAge', '60s'),
    lockTimeout: pick('lockTimeout', '10s'),
    adopt: pick('adopt', 'false') === 'true',
    quiet: pick('quiet', 'false') === 'true',
    ...Object.fromEntries((['listen', 'tokenFile', 'tlsCert', 'tlsKey', 'tlsCa', 'metrics', 'archiveTo'] as const).map((k) => [k, f[k] ?? (file[k] as string | undefined)]).filter(([, v]) => v !== undefined)),
  };
}

export function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} redoship: ${line}\n`);
}

export interface PrimaryHooks {
  /** Called once the primary captures and serves (promotion reports its time from here). */
  afterStart?(listen: string | null): void;
}

export async function primaryCommand(flags: PrimaryFlags, inherited?: Signals, hooks: PrimaryHooks = {}): Promise<void> {
  const signals = inherited ?? catchSignals();
  const f = resolvePrimaryFlags(flags);
  const quiet = !!f.quiet;
  const onEvent = (e: CaptureEvent) => {
    if (e.type === 'warning') log(`warning: ${e.message}`);
    else if (e.type === 'info' && !quiet) log(e.message);
  };
  let remote: Awaited<ReturnType<typeof startRemoteArchiving>> | null = null;
  const handle = await startPrimary({
    db: f.db,
    archive: f.archive,
    checkpointFrames: parseCount(f.checkpointFrames, '--checkpoint-frames'),
    segmentBytes: parseSize(f.segmentSize, '--segment-size'),
    segmentAgeMs: parseDuration(f.segmentAge, '--segment-age'),
    snapshotLockTimeoutMs: parseDuration(f.lockTimeout, '--lock-timeout'),
    adopt: !!f.adopt,
    onEvent,
    ...(f.listen
      ? {
          listen: {
            ...hostPort(f.listen, '--listen'),
            ...(f.tlsCert || f.tlsKey
              ? { tls: { cert: readTlsFile(f.tlsCert, '--tls-cert') ?? missing('--tls-cert'), key: readTlsFile(f.tlsKey, '--tls-key') ?? missing('--tls-key'), ...(f.tlsCa ? { ca: readTlsFile(f.tlsCa, '--tls-ca')! } : {}) } }
              : {}),
          },
          secret: readSecret(f.tokenFile, 'primary --listen'),
        }
      : {}),
    ...(f.metrics ? { metrics: hostPort(f.metrics, '--metrics') } : {}),
    // A segment sealed before remote archiving has started is in the catch-up it starts with.
    ...(f.archiveTo ? { onSealed: (p: string) => remote?.enqueue(p) } : {}),
  });
  // Remote archiving: every sealed segment is copied to the repository within seconds, in order; what a
  // failed copy misses is retried, and what was sealed before this start is caught up first.
  remote = f.archiveTo ? await startRemoteArchiving(handle, f.archiveTo) : null;
  const st = handle.status();
  if (!quiet)
    log(
      `primary: capturing ${st.db} into ${handle.archive.dir} (last LSN ${handle.capturer.lastLsn}, start: ${handle.capturer.stats.start})` +
        (st.listen ? `; serving redo on ${f.tlsCert ? 'wss' : 'ws'}://${st.listen}` : '') +
        (handle.metricsPort !== null ? `; metrics on port ${handle.metricsPort}` : ''),
    );
  hooks.afterStart?.(st.listen);
  const stopRequests = serveBackupRequests(handle);
  const roles = serveRoleRequests(handle, f.db, f.archive);
  const why = await Promise.race([signals.next, handle.failed.then((e) => e), roles.demoteRequested]);
  stopRequests();
  roles.stop();
  if (typeof why === 'object' && !(why instanceof Error)) {
    // Switchover: the target has promoted; this process goes on as its standby.
    let at: { lsn: bigint; commitTimeUs: bigint };
    try {
      at = await handle.demote(why.newPrimary, (ms) => log(`waiting for applications to close ${st.db} (${Math.round(ms / 1000)} s): they belong on the new primary ${why.newPrimary}`));
      await remote?.drain();
    } catch (e) {
      process.exitCode = reportError(e);
      return;
    }
    Applier.adopt(f.db, Archive.open(f.archive), at.lsn as Lsn, at.commitTimeUs);
    log(`demoted at LSN ${at.lsn}: now a standby of ${why.newPrimary}`);
    await standbyCommand(
      undefined,
      {
        db: f.db,
        archive: f.archive,
        from: why.newPrimary,
        ...(f.tokenFile ? { tokenFile: f.tokenFile } : {}),
        ...(f.listen ? { listen: f.listen } : {}),
        ...(f.tlsCa ? { tlsCa: f.tlsCa } : {}),
        ...(f.tlsCert ? { tlsCert: f.tlsCert } : {}),
        ...(f.tlsKey ? { tlsKey: f.tlsKey } : {}),
        ...(quiet ? { quiet: true } : {}),
      },
      signals,
    );
    return;
  }
  if (remote) {
    // The stop seals the open segment: copy it too before exiting.
    await handle.stop().catch(() => {});
    await remote.drain();
  }
  if (typeof why !== 'string') {
    process.exitCode = reportError(why);
    return;
  }
  if (!quiet) log(`${why}: capturing what is committed, sealing`);
  try {
    await handle.stop();
    if (!quiet) log(`stopped at LSN ${handle.capturer.lastLsn}`);
  } catch (e) {
    process.exitCode = reportError(e);
  }
}
