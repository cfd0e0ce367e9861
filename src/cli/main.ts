/**
 * The command line: parses flags, calls the modules, prints. Every command has --help with an example, and
 * --json where a script would want the answer. Errors: a RedoshipError prints its message and hint and exits
 * with its code; anything else is a bug and prints its stack (exit 1).
 */
import { Command, CommanderError, Option } from 'commander';
import { RedoshipError, isRedoshipError } from '../error/index.js';

/*
 * Each command's module is imported when the command runs, not before: importing all of them (ws, SQLite,
 * zstd, the drill runner...) cost every invocation ~160 ms, --version and --help included.
 */
const modules = {
  archive: () => import('./archive-cmd.js'),
  primary: () => import('./primary-cmd.js'),
  restore: () => import('./restore-cmd.js'),
  status: () => import('./status-cmd.js'),
  demo: () => import('./demo-cmd.js'),
  standby: () => import('./standby-cmd.js'),
  promote: () => import('./promote-cmd.js'),
  switchover: () => import('./switchover-cmd.js'),
  reinstate: () => import('./reinstate-cmd.js'),
  repair: () => import('./repair-cmd.js'),
  backup: () => import('./backup-cmd.js'),
  retention: () => import('./retention-cmd.js'),
  drill: () => import('./drill-cmd.js'),
};
type Mod<P extends keyof typeof modules> = Awaited<ReturnType<(typeof modules)[P]>>;

/** An action that imports its module, then calls the command in it with every argument commander gives. */
function lazy<P extends keyof typeof modules, K extends keyof Mod<P>>(mod: P, name: K): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    const m = (await modules[mod]()) as Mod<P>;
    await (m[name] as unknown as (...a: unknown[]) => unknown)(...args);
  };
}

function example(text: string): string {
  return `\nExample:\n  ${text.trim().split('\n').join('\n  ')}\n`;
}

export function buildProgram(): Command {
  const program = new Command('redoship')
    .description('Log-shipping standby and backup for SQLite: archives every committed transaction of a live database as redo.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('demo')
    .description('run a demo on this machine: a database with a workload, a primary, and a delayed standby; status until Ctrl-C')
    .option('--dir <dir>', 'where the demo keeps its files', '.redoship-demo')
    .option('--rate <n>', 'transactions per second of the demo workload', '50')
    .option('--delay <duration>', 'apply delay of the demo standby', '5s')
    .option('--duration <d>', 'stop by itself after this long (e.g. 30s); default: run until Ctrl-C')
    .addHelpText('after', example('npx redoship demo --rate 200'))
    .action(lazy('demo', 'demoCommand'));

  program
    .command('primary')
    .description('attach to a live SQLite database and archive every committed transaction, until SIGINT/SIGTERM')
    .option('--db <path>', 'the live database (other processes keep writing it)')
    .option('--archive <dir>', 'the archive directory (created on first start)')
    .option('--checkpoint-frames <n>', 'run a checkpoint cycle when the WAL holds this many frames (default 1000)')
    .option('--segment-size <size>', 'seal an archive segment at this size (default 64MB)')
    .option('--segment-age <duration>', 'seal an archive segment when its first record is this old (default 60s)')
    .option('--lock-timeout <duration>', 'how long a base or resync waits for the write lock (default 10s)')
    .option('--config <file>', 'read these options from a JSON file ({"db": ..., "archive": ..., "segment-size": ...}); flags win')
    .option('--adopt', 'accept an archive made for this database at another path (it was moved)')
    .option('--listen <host:port>', 'serve redo to standbys on this address (ws://, or wss:// with --tls-cert/--tls-key)')
    .option('--token-file <file>', 'the shared secret standbys must prove (needed with --listen)')
    .option('--tls-cert <file>', 'serve wss:// with this certificate (PEM)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .option('--tls-ca <file>', 'require standbys to present a client certificate signed by this CA')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--archive-to <repo>', 'copy every sealed archive segment to this backup repository within seconds (remote archiving)')
    .option('--quiet', 'print only warnings and errors')
    .addHelpText('after', example('npx redoship primary --db app.db --archive ./arch\nnpx redoship primary --db app.db --archive ./arch --listen 127.0.0.1:7400 --token-file secret\nnpx redoship primary --config /etc/redoship/app.json'))
    // Not lazy(): commander's next argument (the Command) would land in primaryCommand's `inherited`.
    .action(async (flags: Parameters<Mod<'primary'>['primaryCommand']>[0]) => (await modules.primary()).primaryCommand(flags));

  program
    .command('standby')
    .argument('[action]', 'none: run the standby; pause | resume | apply: control a standby through its archive')
    .description('receive redo from a primary into a local archive and apply it to a readable copy, with a delay')
    .option('--db <path>', 'the standby database (seeded from the primary; omit for an archive-only DR site)')
    .option('--archive <dir>', 'the standby archive directory (complete redo, fsynced before it is acknowledged)')
    .option('--from <url>', 'the primary (or a cascading standby): ws://HOST:PORT or wss://HOST:PORT')
    .option('--token-file <file>', 'the shared secret (the same file as the primary)')
    .option('--delay <duration>', 'apply a transaction this long after its commit: 30s, 5m, 1h (default 0)')
    .option('--apply-interval <duration>', 'least time between two apply batches: shorter shows commits to readers sooner, longer leaves the disk to receiving (default 100ms)')
    .option('--name <name>', 'how the primary names this standby in its status')
    .option('--listen <host:port>', 'serve redo onward to other standbys (cascade): what the primary confirmed durable')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--tls-ca <file>', 'trust this CA for the primary certificate (self-signed)')
    .option('--tls-cert <file>', 'client certificate to present (and, with --listen, the certificate served)')
    .option('--tls-key <file>', 'the private key of --tls-cert')
    .option('--segment-size <size>', 'seal a standby archive segment at this size, once the primary confirmed all of it (default 64MB)')
    .option('--segment-age <duration>', 'seal a standby archive segment when this old, once confirmed (default 60s)')
    .option('--until-lsn <n>', 'with apply: apply up to this LSN (ignoring the delay), then pause')
    .option('--until-time <iso>', 'with apply: apply up to this commit time, then pause')
    .option('--config <file>', 'read options from a JSON file; flags win')
    .option('--json', 'with pause/resume/apply: print JSON')
    .option('--quiet', 'print only warnings and errors')
    .addHelpText(
      'after',
      example(
        'npx redoship standby --db dr.db --archive ./dr-arch --from ws://127.0.0.1:7400 --token-file secret --delay 30m\n' +
          'npx redoship standby pause --archive ./dr-arch\n' +
          'npx redoship standby apply --archive ./dr-arch --until-lsn 1234     # recover to just before a mistake\n' +
          'npx redoship standby resume --archive ./dr-arch',
      ),
    )
    // Not lazy(): commander's next argument (the Command) would land in standbyCommand's `inherited`.
    .action(async (verb: string | undefined, flags: Parameters<Mod<'standby'>['standbyCommand']>[1]) => (await modules.standby()).standbyCommand(verb, flags));

  program
    .command('promote')
    .description('failover: make a standby the primary (new incarnation, WAL mode); a running standby daemon goes on as the primary')
    .option('--archive <dir>', 'the standby archive')
    .option('--db <path>', 'the standby database (default: the one the archive keeps; needed for an archive-only site)')
    .option('--until-lsn <n>', 'promote at this LSN instead of the last one received')
    .option('--until-time <iso>', 'promote at the last transaction committed at or before this time')
    .option('--no-serve', 'without a running standby daemon: promote the files and exit instead of running as the primary')
    .option('--listen <host:port>', 'without a running standby daemon: serve redo on this address as the primary')
    .option('--token-file <file>', 'the shared secret (with --listen)')
    .option('--metrics <host:port>', 'serve Prometheus metrics (when running as the primary here)')
    .option('--timeout <seconds>', 'how long to wait for a running standby daemon to promote (default and most: 120)')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print only warnings and errors')
    .addHelpText('after', example('npx redoship promote --archive ./dr-arch\nnpx redoship promote --archive ./dr-arch --until-time 2026-11-22T09:59:00Z --json'))
    .action(lazy('promote', 'promoteCommand'));

  program
    .command('switchover')
    .description('planned role swap without loss: the standby at --to becomes the primary, the primary its standby')
    .option('--to <url>', "the standby to promote: its --listen address, ws://HOST:PORT")
    .option('--primary <url>', "the primary's redo address as this machine reaches it (default: the target's --from)")
    .option('--token-file <file>', 'the shared secret of the primary and standbys')
    .option('--tls-ca <file>', 'trust this CA for wss:// certificates')
    .option('--timeout <duration>', 'give up (and let the primary accept writes again) after this long (default 30s)')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print only the result')
    .addHelpText('after', example('npx redoship switchover --to ws://standby:7401 --token-file secret'))
    .action(lazy('switchover', 'switchoverCommand'));

  program
    .command('reinstate')
    .description('make an old primary a standby of the new one, copying only the pages that differ')
    .option('--db <path>', 'the old primary database')
    .option('--archive <dir>', 'its archive')
    .option('--from <url>', 'the new primary: ws://HOST:PORT')
    .option('--token-file <file>', 'the shared secret')
    .option('--tls-ca <file>', 'trust this CA for wss:// certificates')
    .option('--listen <host:port>', 'as a standby, serve redo onward on this address')
    .option('--delay <duration>', 'as a standby, apply with this delay')
    .option('--no-serve', 'exit after reinstating instead of running as the standby')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print only warnings and errors')
    .addHelpText('after', example('npx redoship reinstate --db old.db --archive ./old-arch --from ws://new-primary:7400 --token-file secret'))
    .action(lazy('reinstate', 'reinstateCommand'));

  program
    .command('repair')
    .description('block media recovery: rewrite damaged pages of a live database from a standby, an archive, or backups + redo')
    .option('--db <path>', 'the database (a running redoship primary)')
    .option('--pages <list>', 'page numbers: 5,9,20-24')
    .option('--from <source>', 'ws://standby:PORT (or the primary), an archive directory, or a backup repository')
    .option('--archive <dir>', "the primary's archive (default: found from the running primary)")
    .option('--token-file <file>', 'the shared secret (with a ws:// source)')
    .option('--tls-ca <file>', 'trust this CA for wss://')
    .option('--key-file <file>', 'key of encrypted backup sets (with a repository source)')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print only the result')
    .addHelpText('after', example('npx redoship repair --db app.db --pages 5,9 --from ws://standby:7401 --token-file secret\nnpx redoship repair --db app.db --pages 5 --from ./backups'))
    .action(lazy('repair', 'repairCommand'));

  const archive = program.command('archive').description('inspect an archive');
  archive
    .command('list')
    .description('list segments: LSN ranges, times, sizes, bases and breaks')
    .requiredOption('--archive <dir>', 'the archive directory')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship archive list --archive ./arch --json'))
    .action(lazy('archive', 'archiveList'));
  archive
    .command('verify')
    .description('check every record of every segment; exits non-zero on damage')
    .requiredOption('--archive <dir>', 'the archive directory')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship archive verify --archive ./arch'))
    .action(lazy('archive', 'archiveVerify'));

  program
    .command('restore')
    .description('build a database from backup sets and/or archived redo, up to the end, an LSN or a time')
    .option('--archive <dir>', 'an archive: its base + redo, or the redo after the last backup set')
    .option('--repo <dir>', 'a backup repository: level 0 + level 1 sets, then redo from --archive')
    .requiredOption('--to <path>', 'the database file to create (must not exist)')
    .option('--until-lsn <n>', 'stop after this LSN')
    .option('--until-time <iso>', 'stop after the last transaction committed at or before this time')
    .option('--preview', 'with --repo: print the plan, read no data')
    .option('--encrypt-key-file <file>', 'the key file of encrypted backup sets')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress line (drawn only when stderr is a terminal)')
    .addHelpText(
      'after',
      example('npx redoship restore --archive ./arch --to out.db --until-time 2026-11-22T10:15:00Z\nnpx redoship restore --repo ./backups --archive ./arch --to out.db --preview'),
    )
    .action(lazy('restore', 'restoreCommand'));

  program
    .command('backup')
    .argument('[action]', 'none: take a backup set; merge: a synthetic level 0 from the newest chain; archive: copy archived redo into the repository')
    .description('take a backup set (level 0: every page; level 1: pages changed since its parent) at one LSN, while the application writes')
    .option('--db <path>', 'the live database')
    .option('--archive <dir>', 'its archive (the change tracking for level 1, and where a running primary takes requests)')
    .option('--repo <dir>', 'the backup repository (created on first use)')
    .option('--level <0|1>', 'backup level', '0')
    .option('--cumulative', 'level 1 since the last level 0 (default: since the last level 0 or 1)')
    .option('--compress <alg[:level]>', 'zstd[:1-19], gzip[:1-9] or none', 'zstd:1')
    .option('--max-piece-size <size>', 'start a new piece past this size', '256MB')
    .option('--encrypt-key-file <file>', 'encrypt the pieces (AES-256-GCM) with a key derived from this file; restore needs it')
    .option('--copy <repo>', 'also write an identical copy of the set to this repository (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--delete-input', 'with archive: delete the copied segments from the archive (those before its latest base)')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress line (drawn only when stderr is a terminal)')
    .addHelpText(
      'after',
      example(
        'npx redoship backup --db app.db --archive ./arch --repo ./backups --level 0\n' +
          'npx redoship backup --db app.db --archive ./arch --repo ./backups --level 1 --cumulative\n' +
          'npx redoship backup archive --archive ./arch --repo ./backups --delete-input\n' +
          'npx redoship backup merge --repo ./backups',
      ),
    )
    .action(lazy('backup', 'backupCommand'));

  program
    .command('validate')
    .description('read every piece of every backup set and check every checksum; --restore-test also restores and checks it')
    .requiredOption('--repo <dir>', 'the backup repository')
    .option('--restore-test', 'restore the newest chain to a temporary file: integrity_check and page hashes')
    .option('--encrypt-key-file <file>', 'the key file of encrypted backup sets')
    .option('--json', 'print JSON')
    .option('--quiet', 'no progress line (drawn only when stderr is a terminal)')
    .addHelpText('after', example('npx redoship validate --repo ./backups --restore-test'))
    .action(lazy('backup', 'validateCommand'));

  program
    .command('crosscheck')
    .description('check that every catalogued backup set is still whole; mark missing ones expired')
    .requiredOption('--repo <dir>', 'the backup repository')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship crosscheck --repo ./backups'))
    .action(lazy('backup', 'crosscheckCommand'));

  program
    .command('catalog')
    .argument('<action>', 'rebuild')
    .description('rebuild the catalog of a repository from its manifests alone')
    .requiredOption('--repo <dir>', 'the backup repository')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship catalog rebuild --repo ./backups'))
    .action(async (action: string, f: { repo: string; json?: boolean }) => {
      if (action !== 'rebuild') throw new RedoshipError('USAGE', `unknown catalog action "${action}"`, 'use: redoship catalog rebuild --repo DIR');
      await (await modules.backup()).catalogRebuildCommand(f);
    });

  program
    .command('list')
    .description('list the backup sets of a repository: levels, parents, LSN ranges, sizes')
    .requiredOption('--repo <dir>', 'the backup repository')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship list --repo ./backups --json'))
    .action(lazy('backup', 'listCommand'));

  for (const [verb, action, what] of [
    ['report', 'reportObsoleteCommand', 'list the backup sets a retention policy no longer needs, and why (RMAN REPORT OBSOLETE)'],
    ['delete', 'deleteObsoleteCommand', 'delete the backup sets a retention policy no longer needs (RMAN DELETE OBSOLETE)'],
  ] as const)
    program
      .command(verb)
      .argument('<what>', 'obsolete')
      .description(what)
      .requiredOption('--repo <dir>', 'the backup repository')
      .option('--redundancy <n>', 'keep the N newest level 0 backups and the level 1s that depend on them')
      .option('--recovery-window <duration>', 'keep what restores any point of the last D (7d, 12h): may keep a level 0 older than D')
      .option('--json', 'print JSON')
      .addHelpText('after', example(`npx redoship ${verb} obsolete --repo ./backups --recovery-window 7d\nnpx redoship ${verb} obsolete --repo ./backups --redundancy 2 --json`))
      .action(lazy('retention', action));

  program
    .command('drill')
    .argument('<scenario>', 'a scenario file (scenarios/*.yaml)')
    .description('run a drill scenario end to end with real processes (faults, role changes, checks); report timeline, outage, loss, lags; exit 4 when a check fails')
    .option('--report <file>', 'also write the report as Markdown')
    .option('--json', 'print the result as JSON')
    .option('--short', "use the scenario's short: values (a few seconds; CI)")
    .option('--scale <factor>', 'multiply every wait step (e.g. 10 for a long soak)')
    .option('--set <name=value>', 'override a scenario variable (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--dir <dir>', 'run in this directory and keep it (default: a fresh temporary one, removed when the drill passes)')
    .option('--keep', 'keep the temporary directory even when the drill passes')
    .option('--check', 'only validate the scenario file')
    .option('--quiet', 'no progress lines on stderr')
    .addHelpText('after', example('npx redoship drill scenarios/switchover.yaml --report report.md\nnpx redoship drill scenarios/failover.yaml --short --json\nnpx redoship drill scenarios/cascade.yaml --set load=60s --scale 2'))
    .action(lazy('drill', 'drillCommand'));

  program
    .command('status')
    .description('one screen: last LSN, last commit time, WAL size, lag')
    .requiredOption('--archive <dir>', 'the archive directory')
    .option('--json', 'print JSON')
    .addHelpText('after', example('npx redoship status --archive ./arch'))
    .action(lazy('status', 'statusCommand'));

  for (const c of program.commands) c.exitOverride();
  for (const c of archive.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander already printed its message; help and version are not errors.
    return e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
  }
  if (isRedoshipError(e)) {
    process.stderr.write(`redoship: error: ${e.message}\n  hint: ${e.hint}\n`);
    return e.exitCode;
  }
  process.stderr.write(`redoship: internal error (a bug; please report it):\n${(e as Error)?.stack ?? String(e)}\n`);
  return 1;
}

export { Option };
