/**
 * `redoship reinstate`: makes an old primary that diverged after a failover (or was demoted) a standby of the
 * new primary, copying only the pages that differ rather than the whole file (the steps: roles/reinstate.ts),
 * then runs it as that standby (unless --no-serve).
 */
import { resolve } from 'node:path';
import { RedoshipError } from '../error/index.js';
import { reinstate } from '../roles/index.js';
import { readSecret, readTlsFile } from './net-flags.js';
import { log } from './primary-cmd.js';
import { standbyCommand, type StandbyFlags } from './standby-cmd.js';
import { catchSignals } from './signals.js';

export interface ReinstateFlags extends StandbyFlags {
  serve?: boolean;
}

export async function reinstateCommand(f: ReinstateFlags): Promise<void> {
  if (!f.db || !f.archive || !f.from)
    throw new RedoshipError('USAGE', 'reinstate needs --db, --archive and --from', 'example: redoship reinstate --db old.db --archive ./old-arch --from ws://new-primary:7400 --token-file secret');
  const signals = catchSignals();
  const secret = readSecret(f.tokenFile, 'reinstate');
  const ca = readTlsFile(f.tlsCa, '--tls-ca');
  const db = resolve(f.db);
  const report = await reinstate({ db, archive: f.archive, from: f.from, secret, ...(ca ? { tls: { ca } } : {}), onStep: (m) => !f.quiet && log(m) });
  if (f.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else
    process.stdout.write(
      `reinstated ${db} as a standby of ${f.from} at LSN ${String(report.lsn)}: copied ${String(report.pagesCopied)} of ${String(report.databasePages)} pages; ` +
        `${report.discarded.length} transactions after LSN ${String(report.forkLsn)} discarded${report.discardedKeptIn ? ` (kept in ${String(report.discardedKeptIn)})` : ''}.\n` +
        'Commits the old primary made but never archived (if it died before capturing them) were overwritten without being listed.\n',
    );
  if (f.serve === false) return;
  await standbyCommand(undefined, { ...f, db, archive: resolve(f.archive), from: f.from }, signals);
}
