/**
 * `redoship switchover --to ws://standby:7401`: a planned, lossless role swap (DESIGN.md Roles), driven from
 * any machine holding the secret, through control requests (transport/control.ts):
 *
 *   1. describe the target: it must be a standby (with --listen) that is connected and not held back by an
 *      apply delay; its upstream is the primary.
 *   2. freeze the primary: it takes the application's write lock and captures everything (LSN L). From here
 *      applications wait (SQLITE_BUSY): the outage starts.
 *   3. wait until the target holds L, then ask it to promote at L (it applies up to L, forks a new
 *      incarnation, and runs as the primary on the same address).
 *   4. at once, demote the old primary: it fences itself (it can never thaw beside the new primary) and
 *      becomes a standby of the target once its applications have left the file.
 *   5. poll the target until it answers as the primary: the outage ends.
 * A failure before 3 thaws the primary and changes nothing; the primary also thaws by itself after --timeout
 * if this command dies before 3.
 *
 * The primary's side of these requests (serveRoleRequests) also answers `rewind` for `reinstate`.
 */
import { RedoshipError } from '../error/index.js';
import { historyToJson } from '../redo/index.js';
import { type PrimaryHandle } from '../primary/index.js';
import { pageHash, PAGE_HASH_BYTES } from '../sqlite/index.js';
import { controlRequest, type TlsClientOptions } from '../transport/index.js';
import { readSecret, readTlsFile } from './net-flags.js';
import { log } from './primary-cmd.js';
import { pageImagesReply } from './repair-cmd.js';
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

type Obj = Record<string, unknown>;

/** In a primary daemon: answers describe / freeze / thaw / demote / rewind; resolves when demotion is asked. */
export function serveRoleRequests(handle: PrimaryHandle, db: string, archive: string): { demoteRequested: Promise<{ newPrimary: string }>; stop(): void } {
  let resolveDemote!: (v: { newPrimary: string }) => void;
  const demoteRequested = new Promise<{ newPrimary: string }>((r) => (resolveDemote = r));
  const server = handle.server;
  if (server)
    server.controlHandler = async (op, args, partial) => {
      if (op === 'describe')
        return { role: 'primary', databaseId: handle.archive.identity.databaseId, lastLsn: String(handle.capturer.lastLsn), db, archive, fenced: server.fencedBy, history: historyToJson(handle.writer.history) };
      if (op === 'freeze') {
        const f = handle.freeze(typeof args.autoThawMs === 'number' ? args.autoThawMs : 30_000);
        return { lastLsn: String(f.lastLsn), commitTimeUs: String(f.commitTimeUs) };
      }
      if (op === 'thaw') {
        handle.thaw();
        return { thawed: true };
      }
      if (op === 'demote') {
        if (typeof args.newPrimary !== 'string' || !/^wss?:\/\//.test(args.newPrimary)) throw new RedoshipError('USAGE', 'demote needs newPrimary, a ws:// URL', 'this is a bug in switchover');
        setImmediate(() => resolveDemote({ newPrimary: args.newPrimary as string }));
        return { accepted: true };
      }
      if (op === 'rewind') return rewind(handle, args, partial);
      if (op === 'page-images') return pageImagesReply(archive, args);
      throw new RedoshipError('ROLE', `a primary does not take "${op}"`, 'see `redoship switchover --help`');
    };
  return { demoteRequested, stop: () => server && (server.controlHandler = null) };
}

/**
 * For reinstate: compares the caller's page hashes with a consistent snapshot of this primary and sends
 * the pages that differ (and those past the caller's size), then the snapshot's LSN and size.
 */
async function rewind(handle: PrimaryHandle, args: Obj, partial: (body: unknown) => void): Promise<unknown> {
  const theirs = Buffer.from(String(args.hashes ?? ''), 'base64');
  if (theirs.length % PAGE_HASH_BYTES !== 0) throw new RedoshipError('USAGE', 'rewind: hashes are not whole page hashes', 'this is a bug in reinstate');
  const snap = handle.backupSnapshot();
  try {
    let chunk: Array<[number, string]> = [];
    let bytes = 0;
    let differing = 0;
    for (const [pgno, page] of snap.pages()) {
      const h = pageHash(pgno, page);
      const at = (pgno - 1) * PAGE_HASH_BYTES;
      if (at + PAGE_HASH_BYTES <= theirs.length && h.equals(theirs.subarray(at, at + PAGE_HASH_BYTES))) continue;
      differing++;
      chunk.push([pgno, Buffer.from(page).toString('base64')]);
      bytes += page.length;
      if (bytes >= 4 * 1024 * 1024) {
        partial({ pages: chunk });
        chunk = [];
        bytes = 0;
        // Let the socket drain between chunks.
        await new Promise((r) => setImmediate(r));
      }
    }
    if (chunk.length) partial({ pages: chunk });
    return { lsn: String(snap.lsn), commitTimeUs: String(snap.commitTimeUs), sizePages: snap.sizePages, pageSize: snap.pageSize, differing, history: historyToJson(handle.writer.history) };
  } finally {
    snap.release();
  }
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
  const say = (m: string) => !f.quiet && !f.json && log(m);
  const ask = (url: string, op: string, args: Obj = {}, ms = 10_000) => controlRequest({ url, secret, ...(tls ? { tls } : {}), op, args, timeoutMs: ms }) as Promise<Obj>;

  const target = await ask(f.to, 'describe');
  if (target.role !== 'standby')
    throw new RedoshipError('ROLE', `${f.to} is a ${String(target.role)}, not a standby`, 'give --to the --listen address of the standby that should become the primary');
  if (!target.db) throw new RedoshipError('ROLE', `${f.to} keeps an archive only (no database)`, 'switch over to a standby that applies to a database');
  if (!target.connected) throw new RedoshipError('ROLE', `${f.to} is not connected to its primary (${String(target.from)})`, 'see `redoship status` on the standby; a switchover needs it streaming');
  if (Number(target.delayMs) > 0 && BigInt(String(target.appliedLsn ?? 0)) < BigInt(String(target.receivedLsn)))
    throw new RedoshipError(
      'ROLE',
      `${f.to} applies with a delay of ${Math.round(Number(target.delayMs) / 1000)} s and has applied LSN ${String(target.appliedLsn)} of ${String(target.receivedLsn)} received: a delayed standby cannot become the primary without first catching up`,
      'restart that standby with --delay 0, wait until `redoship status` shows no apply lag, then switch over (or pick a standby without a delay)',
    );
  // The target's upstream, as the target reaches it; --primary when this machine reaches it by another name.
  const primaryUrl = f.primary ?? String(target.from);
  const primary = await ask(primaryUrl, 'describe');
  if (primary.role !== 'primary') throw new RedoshipError('ROLE', `${primaryUrl}, the upstream of ${f.to}, is a ${String(primary.role)}, not the primary`, 'switch over from a standby that streams directly from the primary');
  if (primary.databaseId !== target.databaseId)
    throw new RedoshipError('WRONG_DATABASE', `${primaryUrl} serves database ${String(primary.databaseId)}; ${f.to} keeps ${String(target.databaseId)}`, 'give --primary the primary of the database that standby keeps');
  say(`switching over: ${primaryUrl} (primary, LSN ${String(primary.lastLsn)}) -> ${f.to} (standby, received LSN ${String(target.receivedLsn)})`);

  const frozenAt = performance.now();
  const frozen = await ask(primaryUrl, 'freeze', { autoThawMs: timeoutMs + 10_000 });
  const lsn = BigInt(String(frozen.lastLsn));
  say(`primary frozen at LSN ${lsn}; waiting for ${f.to} to hold it`);
  let promotedAt: number;
  let promoted: Obj;
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const t = await ask(f.to, 'describe');
      if (BigInt(String(t.receivedLsn)) >= lsn) break;
      if (Date.now() > deadline) throw new RedoshipError('ROLE', `${f.to} did not receive LSN ${lsn} within ${Math.round(timeoutMs / 1000)} s (it holds ${String(t.receivedLsn)})`, 'see its log and `redoship status`; the primary was thawed and nothing changed');
      await new Promise((r) => setTimeout(r, 5));
    }
    await ask(f.to, 'promote', { untilLsn: String(lsn), by: 'switchover' });
  } catch (e) {
    await ask(primaryUrl, 'thaw').catch(() => {});
    throw e;
  }
  // The point of no return: the target is promoting. The old primary is demoted now, before we even see the
  // target up, so that it can never thaw and take writes beside a new primary (split brain).
  await ask(primaryUrl, 'demote', { newPrimary: f.to });
  // The target restarts its server as the primary's: poll until it answers as one.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const t = await ask(f.to, 'describe', {}, 2_000);
      if (t.role === 'primary') {
        promoted = t;
        promotedAt = performance.now();
        break;
      }
    } catch {
      /* restarting */
    }
    if (Date.now() > deadline)
      throw new RedoshipError('ROLE', `${f.to} did not come up as the primary within ${Math.round(timeoutMs / 1000)} s`, `see its log; the old primary ${primaryUrl} was demoted and takes no writes: promote one of them (\`redoship promote\`) once you know which holds LSN ${lsn}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const outageMs = promotedAt - frozenAt;
  say(`${f.to} is the primary (${Math.round(outageMs)} ms after the freeze); ${primaryUrl} was demoted`);
  const history = promoted.history as Array<{ incarnation: number; forkLsn: string }>;
  const inc = history[history.length - 1]!;
  // Lossless iff the new line forked exactly at the frozen primary's last LSN: checked, not assumed.
  if (BigInt(inc.forkLsn) !== lsn)
    throw new RedoshipError('ROLE', `${f.to} forked incarnation ${inc.incarnation} after LSN ${inc.forkLsn}, not at the frozen primary's last LSN ${lsn}`, 'compare both databases before writing; this is a bug: please report it with both logs');
  const out = { from: primaryUrl, to: f.to, lsn: String(lsn), incarnation: inc.incarnation, forkLsn: inc.forkLsn, outageMs: Math.round(outageMs * 10) / 10 };
  if (f.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else
    process.stdout.write(
      `switched over: ${f.to} is the primary (incarnation ${out.incarnation}, forked after LSN ${out.forkLsn}); ${primaryUrl} becomes its standby once its applications have closed the database.\n` +
        `writes were held for ${out.outageMs} ms; every transaction up to LSN ${lsn} is on the new primary.\n`,
    );
}
