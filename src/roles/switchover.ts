/**
 * Switchover: a planned, lossless role swap (DESIGN.md Roles), driven from any machine holding the secret,
 * through control requests (transport/control.ts; the primary answers them with role-requests.ts):
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
 * A failure before 3 thaws the primary and changes nothing; the primary also thaws by itself after the
 * timeout (+10 s) if the caller dies before 3.
 */
import { RedoshipError } from '../error/index.js';
import { controlRequest, type TlsClientOptions } from '../transport/index.js';

export interface SwitchoverOptions {
  /** The --listen address of the standby to promote (ws:// or wss://). */
  readonly to: string;
  /** The primary as this machine reaches it; by default the target's upstream, as the target reaches it. */
  readonly primary?: string;
  readonly secret: Buffer;
  readonly tls?: TlsClientOptions;
  /** How long to wait for the target to hold the frozen LSN, and then to come up as the primary. */
  readonly timeoutMs: number;
  /** Progress, one line per step. */
  readonly onStep?: (message: string) => void;
}

export interface SwitchoverResult {
  readonly from: string;
  readonly to: string;
  /** The frozen primary's last LSN: every transaction up to it is on the new primary. */
  readonly lsn: string;
  readonly incarnation: number;
  readonly forkLsn: string;
  /** From the freeze to the target answering as the primary: what applications waited. */
  readonly outageMs: number;
}

type Obj = Record<string, unknown>;

export async function switchover(o: SwitchoverOptions): Promise<SwitchoverResult> {
  const say = (m: string) => o.onStep?.(m);
  const ask = (url: string, op: string, args: Obj = {}, ms = 10_000) => controlRequest({ url, secret: o.secret, ...(o.tls ? { tls: o.tls } : {}), op, args, timeoutMs: ms }) as Promise<Obj>;
  const timeoutMs = o.timeoutMs;

  const target = await ask(o.to, 'describe');
  if (target.role !== 'standby')
    throw new RedoshipError('ROLE', `${o.to} is a ${String(target.role)}, not a standby`, 'give --to the --listen address of the standby that should become the primary');
  if (!target.db) throw new RedoshipError('ROLE', `${o.to} keeps an archive only (no database)`, 'switch over to a standby that applies to a database');
  if (!target.connected) throw new RedoshipError('ROLE', `${o.to} is not connected to its primary (${String(target.from)})`, 'see `redoship status` on the standby; a switchover needs it streaming');
  if (Number(target.delayMs) > 0 && BigInt(String(target.appliedLsn ?? 0)) < BigInt(String(target.receivedLsn)))
    throw new RedoshipError(
      'ROLE',
      `${o.to} applies with a delay of ${Math.round(Number(target.delayMs) / 1000)} s and has applied LSN ${String(target.appliedLsn)} of ${String(target.receivedLsn)} received: a delayed standby cannot become the primary without first catching up`,
      'restart that standby with --delay 0, wait until `redoship status` shows no apply lag, then switch over (or pick a standby without a delay)',
    );
  // The target's upstream, as the target reaches it; --primary when this machine reaches it by another name.
  const primaryUrl = o.primary ?? String(target.from);
  const primary = await ask(primaryUrl, 'describe');
  if (primary.role !== 'primary') throw new RedoshipError('ROLE', `${primaryUrl}, the upstream of ${o.to}, is a ${String(primary.role)}, not the primary`, 'switch over from a standby that streams directly from the primary');
  if (primary.databaseId !== target.databaseId)
    throw new RedoshipError('WRONG_DATABASE', `${primaryUrl} serves database ${String(primary.databaseId)}; ${o.to} keeps ${String(target.databaseId)}`, 'give --primary the primary of the database that standby keeps');
  say(`switching over: ${primaryUrl} (primary, LSN ${String(primary.lastLsn)}) -> ${o.to} (standby, received LSN ${String(target.receivedLsn)})`);

  const frozenAt = performance.now();
  const frozen = await ask(primaryUrl, 'freeze', { autoThawMs: timeoutMs + 10_000 });
  const lsn = BigInt(String(frozen.lastLsn));
  say(`primary frozen at LSN ${lsn}; waiting for ${o.to} to hold it`);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Held and confirmed by the primary (transport/protocol.ts): a record the frozen primary did not make
      // durable (its sync failed) may differ from the one it holds.
      const t = await ask(o.to, 'describe');
      if (BigInt(String(t.confirmedLsn ?? t.receivedLsn)) >= lsn) break;
      if (Date.now() > deadline) throw new RedoshipError('ROLE', `${o.to} did not receive LSN ${lsn} within ${Math.round(timeoutMs / 1000)} s (it holds ${String(t.receivedLsn)}, confirmed up to ${String(t.confirmedLsn)})`, 'see its log and `redoship status`; the primary was thawed and nothing changed');
      await new Promise((r) => setTimeout(r, 5));
    }
    await ask(o.to, 'promote', { untilLsn: String(lsn), by: 'switchover' });
  } catch (e) {
    await ask(primaryUrl, 'thaw').catch(() => {});
    throw e;
  }
  // The point of no return: the target is promoting. The old primary is demoted now, before we even see the
  // target up, so that it can never thaw and take writes beside a new primary (split brain).
  await ask(primaryUrl, 'demote', { newPrimary: o.to });
  // The target restarts its server as the primary's: poll until it answers as one.
  let promoted: Obj;
  let promotedAt: number;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const t = await ask(o.to, 'describe', {}, 2_000);
      if (t.role === 'primary') {
        promoted = t;
        promotedAt = performance.now();
        break;
      }
    } catch {
      /* restarting */
    }
    if (Date.now() > deadline)
      throw new RedoshipError('ROLE', `${o.to} did not come up as the primary within ${Math.round(timeoutMs / 1000)} s`, `see its log; the old primary ${primaryUrl} was demoted and takes no writes: promote one of them (\`redoship promote\`) once you know which holds LSN ${lsn}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const outageMs = promotedAt - frozenAt;
  say(`${o.to} is the primary (${Math.round(outageMs)} ms after the freeze); ${primaryUrl} was demoted`);
  const history = promoted.history as Array<{ incarnation: number; forkLsn: string }>;
  const inc = history[history.length - 1]!;
  // Lossless iff the new line forked exactly at the frozen primary's last LSN: checked, not assumed.
  if (BigInt(inc.forkLsn) !== lsn)
    throw new RedoshipError('ROLE', `${o.to} forked incarnation ${inc.incarnation} after LSN ${inc.forkLsn}, not at the frozen primary's last LSN ${lsn}`, 'compare both databases before writing; this is a bug: please report it with both logs');
  return { from: primaryUrl, to: o.to, lsn: String(lsn), incarnation: inc.incarnation, forkLsn: inc.forkLsn, outageMs: Math.round(outageMs * 10) / 10 };
}
