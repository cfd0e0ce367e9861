/**
 * `redoship switchover --to ws://standby:7401`: a planned, lossless role swap. The steps are in
 * roles/switchover.ts; the primary's side of them in roles/role-requests.ts.
 */
import { RedoshipError } from '../error/index.js';
import { switchover } from '../roles/index.js';
import { type TlsClientOptions } from '../transport/index.js';
import { readSecret, readTlsFile } from './net-flags.js';
import { log } from './primary-cmd.js';
import { parseDuration } from './units.js';

export interface SwitchoverFlags {
  to?: string;
  primary?: string;
  tokenFile?: string;
  tlsCa?: string;
  timeout?: string;
  json?: boolean;
  quiet?: boolean;
}

export async function switchoverCommand(f: SwitchoverFlags): Promise<void> {
  if (!f.to || !/^wss?:\/\//.test(f.to))
    throw new RedoshipError('USAGE', 'switchover needs --to ws://STANDBY:PORT (the --listen address of the standby to promote)', 'example: redoship switchover --to ws://standby:7401 --token-file secret');
  if (f.primary !== undefined && !/^wss?:\/\//.test(f.primary))
    throw new RedoshipError('USAGE', `--primary ${f.primary}: not a ws:// or wss:// URL`, 'write it like --primary ws://primary-host:7400');
  const secret = readSecret(f.tokenFile, 'switchover');
  const ca = readTlsFile(f.tlsCa, '--tls-ca');
  const tls: TlsClientOptions | undefined = ca ? { ca } : undefined;
  const timeoutMs = f.timeout ? parseDuration(f.timeout, '--timeout') : 30_000;
  const out = await switchover({
    to: f.to,
    ...(f.primary !== undefined ? { primary: f.primary } : {}),
    secret,
    ...(tls ? { tls } : {}),
    timeoutMs,
    onStep: (m) => !f.quiet && !f.json && log(m),
  });
  if (f.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else
    process.stdout.write(
      `switched over: ${out.to} is the primary (incarnation ${out.incarnation}, forked after LSN ${out.forkLsn}); ${out.from} becomes its standby once its applications have closed the database.\n` +
        `writes were held for ${out.outageMs} ms; every transaction up to LSN ${out.lsn} is on the new primary.\n`,
    );
}
