/*
 * THE REDO PROTOCOL, version 2. One WebSocket per standby; every message is one binary frame holding one
 * msgpack map whose field `t` names it. Integers that are LSNs or microsecond times are msgpack int64.
 *
 *   server -> client  challenge { v, nonce }                 first message, at once on connect
 *   client -> server  hello     { v, mac, cnonce, databaseId, incarnation, lastLsn, lastCommitTimeUs,
 *                                 confirmedLsn, confirmedCommitTimeUs, name, history }
 *   server -> client  welcome   { mac, databaseId, pageSize, incarnation, startLsn, lastLsn, databasePath, history }
 *   server -> client  redo      { parts, lastLsn, timeUs }   parts: framed record parts exactly as in an
 *                                                           archive segment (segment-format.ts), whole parts
 *   server -> client  heartbeat { lastLsn, timeUs }          when idle, so the standby can measure lag and skew;
 *                                                           and as a confirmation (below)
 *   client -> server  ack       { received, durable, applied, timeUs }
 *   either            error     { code, message, hint }      then the sender closes the connection
 *
 * A control connection (switchover, reinstate: transport/control.ts) sends hello with `control { op, args }`
 * (args: a JSON string) and streams no redo; the server answers with one or more
 *   server -> client  result    { mac, body, more }         body: a JSON string; more: another result follows
 * and closes. mac as in welcome, so the client knows the answer came from a holder of the secret.
 *
 * Authentication: both sides hold the same secret. hello.mac = HMAC-SHA256(secret, "redoship-client" | nonce |
 * cnonce); welcome.mac = HMAC-SHA256(secret, "redoship-server" | cnonce | nonce). The secret never crosses
 * the wire, a recorded exchange cannot be replayed (fresh nonces), and the standby knows it reached a
 * primary holding the secret.
 *
 * history: the sender's incarnation history (redo/history.ts), a list of { incarnation, forkLsn, id, at,
 * reason }; absent means never forked. Both sides compare histories before any redo moves (fencing): a
 * server whose history is a proper prefix of the client's was superseded and is refused by both sides.
 *
 * Confirmation (version 2). A primary sends a record once it is written to its archive, before its own
 * fdatasync, so that the standby's sync runs beside the primary's instead of after it (Oracle Data Guard's
 * SYNC transport does the same; a synchronous commit then waits about one sync, not two). lastLsn in welcome,
 * redo and heartbeat is the last LSN durable in the sender's archive: every record up to it is *confirmed*;
 * parts may run ahead of it. After each sync the server confirms what it sent (a heartbeat, when no redo
 * carries it sooner). A standby keeps unconfirmed records durably like any others (and acks them: a
 * synchronous commit counts them), but applies and serves onward only confirmed ones. Should the sender lose
 * an unconfirmed tail (its sync failed; power was lost before it), the standby holds records the sender does
 * not: hello then also names the standby's last confirmed record (confirmedLsn and its commit time), and a
 * server that does not hold lastLsn but does hold confirmedLsn welcomes it at confirmedLsn + 1. The standby
 * sets aside what follows confirmedLsn (kept in its archive's diverged/, never applied) and goes on. A
 * confirmed record is never set aside that way: a server that lost one is refused as before.
 *
 * Invariants: (1) a client sends nothing but hello before welcome, and acks after. (2) redo parts arrive in
 * LSN order from welcome.startLsn with no gap; a record may span several redo messages (a base), never two
 * connections: after a reconnect the server starts again at the first LSN the standby does not hold whole.
 * (3) Every decoded message is checked field by field; anything else is a PROTOCOL error and closes the
 * connection. (4) A message larger than MAX_MESSAGE_BYTES is refused by the WebSocket layer before it is
 * buffered.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import { FIRST_INCARNATION, checkHistory, type History } from '../redo/index.js';

export const PROTOCOL_VERSION = 2;
/** Largest message accepted: one redo message carries at most MAX_REDO_MESSAGE_BYTES of parts (or one part). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
export const MAX_REDO_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface Challenge { readonly t: 'challenge'; readonly v: number; readonly nonce: Uint8Array }
export interface Hello {
  readonly t: 'hello';
  readonly v: number;
  readonly mac: Uint8Array;
  readonly cnonce: Uint8Array;
  /** null for a standby that holds nothing yet. */
  readonly databaseId: string | null;
  readonly incarnation: number;
  /** Last LSN the standby holds durably (0 when none). */
  readonly lastLsn: bigint;
  /** Commit time of that record, so the server can tell a standby that holds another history. */
  readonly lastCommitTimeUs: bigint;
  /** Last LSN the standby holds that its primary confirmed durable (<= lastLsn), and its commit time. */
  readonly confirmedLsn: bigint;
  readonly confirmedCommitTimeUs: bigint;
  readonly name: string;
  readonly history: History;
  /** Present on a control connection. */
  readonly control?: { readonly op: string; readonly args: string };
}
export interface Welcome {
  readonly t: 'welcome';
  readonly mac: Uint8Array;
  readonly databaseId: string;
  readonly pageSize: number;
  readonly incarnation: number;
  readonly startLsn: bigint;
  readonly lastLsn: bigint;
  readonly databasePath: string;
  readonly history: History;
}
export interface Redo { readonly t: 'redo'; readonly parts: Uint8Array; readonly lastLsn: bigint; readonly timeUs: bigint }
export interface Heartbeat { readonly t: 'heartbeat'; readonly lastLsn: bigint; readonly timeUs: bigint }
export interface Ack { readonly t: 'ack'; readonly received: bigint; readonly durable: bigint; readonly applied: bigint; readonly timeUs: bigint }
export interface ErrorMessage { readonly t: 'error'; readonly code: string; readonly message: string; readonly hint: string }

export interface ControlResult { readonly t: 'result'; readonly mac: Uint8Array; readonly body: string; readonly more: boolean }

export type ServerMessage = Challenge | Welcome | Redo | Heartbeat | ErrorMessage | ControlResult;
export type ClientMessage = Hello | Ack | ErrorMessage;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

export function encodeMessage(m: ServerMessage | ClientMessage): Buffer {
  return packr.pack(m);
}

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
const big = (o: Obj, k: string): bigint => {
  const v = o[k];
  if (typeof v === 'bigint' && v >= 0n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new ProtocolError(`field ${k} is not a non-negative integer`);
};
const u32 = (o: Obj, k: string): number => {
  const v = o[k];
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
  throw new ProtocolError(`field ${k} is not a 32-bit integer`);
};
const str = (o: Obj, k: string, max = 4096): string => {
  const v = o[k];
  if (typeof v === 'string' && v.length <= max) return v;
  throw new ProtocolError(`field ${k} is not a string`);
};
const bytes = (o: Obj, k: string, len?: number): Uint8Array => {
  const v = o[k];
  if (v instanceof Uint8Array && (len === undefined || v.length === len)) return v;
  throw new ProtocolError(`field ${k} is not ${len ?? 'some'} bytes`);
};
const dbId = (o: Obj, k: string): string => {
  const v = str(o, k, 32);
  if (!/^[0-9a-f]{32}$/.test(v)) throw new ProtocolError(`field ${k} is not a database id`);
  return v;
};

/** The history field: absent means an archive that never forked. */
const history = (o: Obj): History => {
  const v = o.history;
  if (v === undefined) return [FIRST_INCARNATION];
  if (!Array.isArray(v) || v.length > 10_000) throw new ProtocolError('field history is not a list');
  const h = v.map((e: unknown) => {
    if (!isObj(e)) throw new ProtocolError('field history holds a non-map');
    return { incarnation: u32(e, 'incarnation'), forkLsn: big(e, 'forkLsn'), id: str(e, 'id', 16), at: str(e, 'at', 64), reason: str(e, 'reason', 64) };
  });
  const why = checkHistory(h);
  if (why) throw new ProtocolError(`field history: ${why}`);
  return h;
};

const control = (o: Obj): { op: string; args: string } => {
  const c = o.control;
  if (!isObj(c)) throw new ProtocolError('field control is not a map');
  return { op: str(c, 'op', 64), args: str(c, 'args', MAX_MESSAGE_BYTES) };
};

function unpack(data: Uint8Array): Obj {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (e) {
    throw new ProtocolError(`message does not decode (${(e as Error).message})`);
  }
  if (!isObj(raw) || typeof raw.t !== 'string') throw new ProtocolError('message is not a map with a type');
  return raw;
}

function decodeError(o: Obj): ErrorMessage {
  return { t: 'error', code: str(o, 'code', 64), message: str(o, 'message'), hint: str(o, 'hint') };
}

/** Decodes a message from the server, checking every field. Throws ProtocolError. */
export function decodeServerMessage(data: Uint8Array): ServerMessage {
  const o = unpack(data);
  switch (o.t) {
    case 'challenge':
      return { t: 'challenge', v: u32(o, 'v'), nonce: bytes(o, 'nonce', 32) };
    case 'welcome':
      return {
        t: 'welcome',
        mac: bytes(o, 'mac', 32),
        databaseId: dbId(o, 'databaseId'),
        pageSize: u32(o, 'pageSize'),
        incarnation: u32(o, 'incarnation'),
        startLsn: big(o, 'startLsn'),
        lastLsn: big(o, 'lastLsn'),
        databasePath: str(o, 'databasePath'),
        history: history(o),
      };
    case 'redo':
      return { t: 'redo', parts: bytes(o, 'parts'), lastLsn: big(o, 'lastLsn'), timeUs: big(o, 'timeUs') };
    case 'heartbeat':
      return { t: 'heartbeat', lastLsn: big(o, 'lastLsn'), timeUs: big(o, 'timeUs') };
    case 'result':
      if (typeof o.more !== 'boolean') throw new ProtocolError('field more is not a boolean');
      return { t: 'result', mac: bytes(o, 'mac', 32), body: str(o, 'body', MAX_MESSAGE_BYTES), more: o.more };
    case 'error':
      return decodeError(o);
    default:
      throw new ProtocolError(`unknown message type ${JSON.stringify(o.t).slice(0, 40)}`);
  }
}

/** Decodes a message from a client, checking every field. Throws ProtocolError. */
export function decodeClientMessage(data: Uint8Array): ClientMessage {
  const o = unpack(data);
  switch (o.t) {
    case 'hello':
      return {
        t: 'hello',
        v: u32(o, 'v'),
        mac: bytes(o, 'mac', 32),
        cnonce: bytes(o, 'cnonce', 32),
        databaseId: o.databaseId === null ? null : dbId(o, 'databaseId'),
        incarnation: u32(o, 'incarnation'),
        lastLsn: big(o, 'lastLsn'),
        lastCommitTimeUs: big(o, 'lastCommitTimeUs'),
        confirmedLsn: big(o, 'confirmedLsn'),
        confirmedCommitTimeUs: big(o, 'confirmedCommitTimeUs'),
        name: str(o, 'name', 256),
        history: history(o),
        ...(o.control === undefined ? {} : { control: control(o) }),
      };
    case 'ack':
      return { t: 'ack', received: big(o, 'received'), durable: big(o, 'durable'), applied: big(o, 'applied'), timeUs: big(o, 'timeUs') };
    case 'error':
      return decodeError(o);
    default:
      throw new ProtocolError(`unknown message type ${JSON.stringify(o.t).slice(0, 40)}`);
  }
}

export function newNonce(): Buffer {
  return randomBytes(32);
}

export function clientMac(secret: Uint8Array, nonce: Uint8Array, cnonce: Uint8Array): Buffer {
  return createHmac('sha256', secret).update('redoship-client').update(nonce).update(cnonce).digest();
}

export function serverMac(secret: Uint8Array, nonce: Uint8Array, cnonce: Uint8Array): Buffer {
  return createHmac('sha256', secret).update('redoship-server').update(cnonce).update(nonce).digest();
}

export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function nowUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}
