import { loadConfig } from '../config/index.js';
import { RedoshipError } from '../error/index.js';
import { startPrimary, type CaptureEvent } from '../primary/index.js';
import { reportError } from './main.js';
import { parseCount, parseDuration, parseSize } from './units.js';

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
}

const PRIMARY_KEYS = ['db', 'archive', 'checkpointFrames', 'segmentSize', 'segmentAge', 'lockTimeout', 'adopt', 'quiet'] as const;

/** Flags over config file over defaults; db and archive required from one or the other. */
function resolvePrimaryFlags(f: PrimaryFlags): Required<Omit<PrimaryFlags, 'config'>> {
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
  };
}

export function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} redoship: ${line}\n`);
}

export async function primaryCommand(flags: PrimaryFlags): Promise<void> {
  const f = resolvePrimaryFlags(flags);
  const quiet = !!f.quiet;
  const onEvent = (e: CaptureEvent) => {
    if (e.type === 'warning') log(`warning: ${e.message}`);
    else if (e.type === 'info' && !quiet) log(e.message);
  };
  const handle = await startPrimary({
    db: f.db,
    archive: f.archive,
    checkpointFrames: parseCount(f.checkpointFrames, '--checkpoint-frames'),
    segmentBytes: parseSize(f.segmentSize, '--segment-size'),
    segmentAgeMs: parseDuration(f.segmentAge, '--segment-age'),
    snapshotLockTimeoutMs: parseDuration(f.lockTimeout, '--lock-timeout'),
    adopt: !!f.adopt,
    onEvent,
  });
  if (!quiet) log(`primary: capturing ${handle.status().db} into ${handle.archive.dir} (last LSN ${handle.capturer.lastLsn}, start: ${handle.capturer.stats.start})`);
  await new Promise<void>((resolveRun) => {
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      if (!quiet) log(`${why}: capturing what is committed, sealing`);
      try {
        await handle.stop();
        if (!quiet) log(`stopped at LSN ${handle.capturer.lastLsn}`);
      } catch (e) {
        process.exitCode = reportError(e);
      }
      resolveRun();
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    void handle.failed.then((e) => {
      process.exitCode = reportError(e);
      stopping = true;
      resolveRun();
    });
  });
}
