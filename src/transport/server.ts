/**
 * The redo server: standbys connect (pull, like PostgreSQL's walsender), prove the shared secret, say what
 * they hold, and are streamed every part after it from the source's archive. The server tracks each
 * standby's received / durable / applied LSN from its acks, and resolves waiters for synchronous commits.
 *
 * Backpressure, end to end: a message counts as in flight from ws.send() until ws calls back (its bytes
 * reached the socket). Past maxInFlightBytes a session stops reading the archive until callbacks come; a
 * standby that stops reading fills its TCP window and then our send buffer, so callbacks stop and the
 * server holds at most maxInFlightBytes for it. Nothing is buffered in memory beyond that: the archive is
 * the buffer.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { RedoshipError, isRedoshipError } from '../error/index.js';
import { binHeadBytes, compareHistories, currentIncarnation, describeIncarnation, putBigint, putBinHead, type History } from '../redo/index.js';
import {
  MAX_MESSAGE_BYTES,
  MAX_REDO_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  clientMac,
  decodeClientMessage,
  encodeMessage,
  macEqual,
  newNonce,
  nowUs,
  serverMac,
  type ErrorMessage,
  type ServerMessage,
} from './protocol.js';
import { BufferPool } from './buffer-pool.js';

/** Where the redo comes from: an archive being appended to (a primary's, or a cascading standby's). */
export interface RedoSource {
  readonly databaseId: string;
  readonly pageSize: number;
  readonly incarnation: number;
  readonly databasePath: string;
  /** The incarnation history of the archive (fencing compares it with each standby's). */
  history(): History;
  /** Last LSN that may be sent: written to the archive (a primary's), or durable and confirmed (a cascade's). */
  lastLsn(): bigint;
  /**
   * Last LSN the archive holds (>= lastLsn()): a standby that holds no more than this, on the same line, is
   * continued where it stands, though it may have to wait for more to become sendable (a cascade restarted
   * with an older confirmed LSN than it had served onward).
   */
  heldLsn(): bigint;
  /** Last LSN durable in the archive and confirmed where it came from (protocol.ts, confirmation); <= lastLsn(). */
  confirmedLsn(): bigint;
  /** The LSN a standby with nothing starts at (the latest base), or null when there is none. */
  latestBaseLsn(): bigint | null;
  /** The first LSN the archive holds, or null when empty. */
  firstLsn(): bigint | null;
  /** Commit time of a record, or null when the archive does not hold it. */
  commitTimeOf(lsn: bigint): bigint | null;
  cursor(fromLsn: bigint): { read(maxBytes: number): ReadonlyArray<{ readonly raw: Uint8Array }>; readonly nextLsn: bigint };
  /** Calls fn whenever more becomes durable; returns the unsubscribe function. */
  subscribe(fn: () => void): () => void;
}

export type ControlHandler = (op: string, args: Record<string, unknown>, partial: (body: unknown) => void) => Promise<unknown>;

export interface TlsServerOptions {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** CA for client certificates; with it, clients must present a certificate it signed. */
  readonly ca?: string | Buffer;
}

export interface RedoServerOptions {
  readonly host: string;
  readonly port: number;
  readonly secret: Uint8Array;
  readonly tls?: TlsServerOptions;
  /** Default 16 MiB. */
  readonly maxInFlightBytes?: number;
  /** Heartbeat when idle. Default 1000 ms. */
  readonly heartbeatMs?: number;
  readonly onEvent?: (e: { type: 'info' | 'warning'; message: string }) => void;
  /**
   * Answers control requests (switchover, reinstate). partial() sends an intermediate result; the promise's
   * value is the last one. Throw a RedoshipError to refuse.
   */
  readonly onControl?: ControlHandler;
  /** A standby proved this server superseded (it follows a newer incarnation). The server stays fenced. */
  readonly onFenced?: (why: string) => void;
  /**
   * This server is a standby serving onward (a cascade): a standby that holds more than it does is told
   * UPSTREAM_BEHIND, which it retries, instead of STANDBY_AHEAD, which ends it. A cascade can be behind its
   * own standbys for a while (they followed another server before; it set aside a tail its primary lost).
   */
  readonly cascade?: boolean;
}

export interface StandbyInfo {
  readonly name: string;
  readonly remote: string;
  readonly connectedAt: string;
  readonly state: 'handshake' | 'streaming';
  readonly sentLsn: string;
  readonly receivedLsn: string;
  readonly durableLsn: string;
  readonly appliedLsn: string;
  /** Primary's last LSN minus the standby's durable LSN. */
  readonly lagRecords: string;
  /** Microseconds between now and the standby's last ack (its clock vs ours). */
  readonly lastAckAgeMs: number | null;
}

interface Session {
  ws: WebSocket;
  name: string;
  remote: string;
  connectedAt: string;
  nonce: Buffer;
  authed: boolean;
  cursor: ReturnType<RedoSource['cursor']> | null;
  inFlight: number;
  sentLsn: bigint;
  /** The confirmed LSN this session was last told (protocol.ts, confirmation). */
  confirmedSent: bigint;
  received: bigint;
  durable: bigint;
  applied: bigint;
  lastAckMs: number | null;
  lastSendMs: number;
  pumping: boolean;
}

export class RedoServer {
  private readonly sessions = new Set<Session>();
  /** Buffers for redo messages, used again after each write (buffer-pool.ts says why). */
  private readonly messageBuffers = new BufferPool();
  private readonly waiters: Array<{ lsn: bigint; n: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private readonly unsubscribe: () => void;
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  /** Answers control requests; set by the service running this server (see RedoServerOptions.onControl). */
  controlHandler: ControlHandler | null = null;
  /** Set once this server was proved superseded (or told so): every standby is refused from then on. */
  fencedBy: string | null = null;

  /** Refuses every standby from now on, and drops those connected (the caller recorded why, durably). */
  fence(why: string): void {
    this.fencedBy = why;
    for (const s of this.sessions) if (s.authed) this.refuse(s, { t: 'error', code: 'FENCED', message: `this server was superseded: ${why}`, hint: 'connect to the new primary instead' });
  }

  private constructor(
    private readonly source: RedoSource,
    private readonly opts: RedoServerOptions,
    private readonly http: HttpServer,
    private readonly wss: WebSocketServer,
  ) {
    this.unsubscribe = source.subscribe(() => {
      for (const s of this.sessions) this.pump(s);
    });
    this.heartbeat = setInterval(() => this.beat(), opts.heartbeatMs ?? 1000);
    this.heartbeat.unref();
    wss.on('connection', (ws, req) => this.accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
  }

  static async start(source: RedoSource, opts: RedoServerOptions): Promise<RedoServer> {
    const http = opts.tls
      ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key, ...(opts.tls.ca ? { ca: opts.tls.ca, requestCert: true, rejectUnauthorized: true } : {}) })
      : createHttpServer();
    http.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('redoship redo server: connect with a redoship standby (WebSocket)\n');
    });
    await listenOrExplain(http, opts.host, opts.port, '--listen');
    // Made after listening succeeded: it re-emits the server's errors as its own.
    const wss = new WebSocketServer({ server: http, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    wss.on('error', (e) => opts.onEvent?.({ type: 'warning', message: `redo server: ${e.message}` }));
    return new RedoServer(source, opts, http, wss);
  }

  get address(): { host: string; port: number } {
    const a = this.http.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  private emit(type: 'info' | 'warning', message: string): void {
    this.opts.onEvent?.({ type, message });
  }

  private accept(ws: WebSocket, remote: string): void {
    const s: Session = {
      ws,
      name: '?',
      remote,
      connectedAt: new Date().toISOString(),
      nonce: newNonce(),
      authed: false,
      cursor: null,
      inFlight: 0,
      sentLsn: 0n,
      confirmedSent: 0n,
      received: 0n,
      durable: 0n,
      applied: 0n,
      lastAckMs: null,
      lastSendMs: Date.now(),
      pumping: false,
    };
    this.sessions.add(s);
    const helloTimer = setTimeout(() => this.refuse(s, { t: 'error', code: 'PROTOCOL', message: 'no hello within 10 s', hint: 'is the peer a redoship standby?' }), 10_000);
    ws.on('message', (data, isBinary) => {
      try {
        if (!isBinary) throw new ProtocolError('text message');
        const m = decodeClientMessage(data as Buffer);
        if (!s.authed) {
          clearTimeout(helloTimer);
          this.onHello(s, m);
        } else if (m.t === 'ack') {
          s.received = m.received;
          s.durable = m.durable;
          s.applied = m.applied;
          s.lastAckMs = Date.now();
          this.settleWaiters();
        } else if (m.t === 'error') {
          this.emit('warning', `standby ${s.name} (${s.remote}) reports ${m.code}: ${m.message}`);
          ws.close();
        } else throw new ProtocolError(`unexpected ${m.t}`);
      } catch (e) {
        const pe = e instanceof ProtocolError;
        this.refuse(s, { t: 'error', code: pe ? 'PROTOCOL' : isRedoshipError(e) ? e.code : 'INTERNAL', message: (e as Error).message, hint: pe ? 'the standby sent something this server cannot accept: are both sides the same redoship version?' : isRedoshipError(e) ? e.hint : 'see the primary log' });
      }
    });
    ws.on('close', () => {
      clearTimeout(helloTimer);
      this.sessions.delete(s);
      if (s.authed) this.emit('info', `standby ${s.name} (${s.remote}) disconnected at durable LSN ${s.durable}`);
    });
    ws.on('error', () => {});
    this.send(s, { t: 'challenge', v: PROTOCOL_VERSION, nonce: s.nonce });
  }

  private onHello(s: Session, m: ReturnType<typeof decodeClientMessage>): void {
    if (m.t !== 'hello') throw new ProtocolError(`expected hello, got ${m.t}`);
    s.name = m.name || s.remote;
    if (m.v !== PROTOCOL_VERSION)
      return this.refuse(s, { t: 'error', code: 'VERSION', message: `protocol version ${m.v} is not ${PROTOCOL_VERSION}, the primary's`, hint: 'run the same redoship version on the primary and its standbys' });
    if (!macEqual(m.mac, clientMac(this.opts.secret, s.nonce, m.cnonce)))
      return this.refuse(s, { t: 'error', code: 'AUTH', message: 'the standby did not prove the shared secret', hint: 'give the standby the same --token-file as the primary' }, `refused ${s.remote}: wrong secret`);
    if (m.control) return this.onControl(s, m.control, m.cnonce);
    const src = this.source;
    if (m.databaseId !== null && m.databaseId !== src.databaseId)
      return this.refuse(s, { t: 'error', code: 'WRONG_DATABASE', message: `the standby holds database ${m.databaseId}; this primary serves ${src.databaseId}`, hint: 'give the standby an empty archive directory to seed it from this primary' });
    if (this.fencedBy)
      return this.refuse(s, { t: 'error', code: 'FENCED', message: `this server was superseded: ${this.fencedBy}`, hint: 'connect to the new primary instead' });
    const ours = src.history();
    const rel = compareHistories(m.history, ours);
    if (rel.relation === 'ahead') {
      const why = `standby ${s.name} (${s.remote}) follows ${describeIncarnation(currentIncarnation(m.history))}, which superseded this server's ${describeIncarnation(currentIncarnation(ours))}`;
      this.refuse(s, { t: 'error', code: 'FENCED', message: `${why}: this server must not ship redo`, hint: 'this primary was replaced by a failover or switchover; make it a standby of the new primary with `redoship reinstate`' });
      this.opts.onFenced?.(why);
      return;
    }
    if (rel.relation === 'diverged' || (rel.relation === 'behind' && m.lastLsn > rel.forkLsn))
      return this.refuse(s, { t: 'error', code: 'DIVERGED', message: `the standby holds LSN ${rel.forkLsn + 1n}..${m.lastLsn} of ${describeIncarnation(currentIncarnation(m.history))}, but this server's ${describeIncarnation(currentIncarnation(ours))} left that line after LSN ${rel.forkLsn}`, hint: 'make the standby follow this line with `redoship reinstate` (it keeps what it discards), or seed it again into an empty directory' });
    let start: bigint;
    if (m.lastLsn === 0n) {
      const base = src.latestBaseLsn();
      if (base === null) return this.refuse(s, { t: 'error', code: 'NO_BASE', message: 'the primary has no base yet', hint: 'retry in a moment' });
      start = base;
    } else {
      const why = this.notHeld(m.lastLsn, m.lastCommitTimeUs);
      if (why === null) start = m.lastLsn + 1n;
      else if (why.code !== 'NEED_BASE' && why.code !== 'UPSTREAM_BEHIND' && m.confirmedLsn < m.lastLsn && this.notHeld(m.confirmedLsn, m.confirmedCommitTimeUs) === null) {
        // The standby holds records after its last confirmed one that this server does not: an unconfirmed
        // tail this server lost (protocol.ts, confirmation). The standby sets it aside and goes on from here.
        start = m.confirmedLsn + 1n;
        this.emit('warning', `standby ${s.name} (${s.remote}) holds LSN ${start}..${m.lastLsn}, which this server never confirmed and does not hold (${why.message}); it sets them aside`);
      } else return this.refuse(s, why);
    }
    s.authed = true;
    // What it holds once it has set aside what this server does not hold (protocol.ts, confirmation).
    s.received = s.durable = start - 1n < m.lastLsn ? start - 1n : m.lastLsn;
    s.sentLsn = start - 1n;
    s.confirmedSent = src.confirmedLsn();
    s.cursor = src.cursor(start);
    this.send(s, {
      t: 'welcome',
      mac: serverMac(this.opts.secret, s.nonce, m.cnonce),
      databaseId: src.databaseId,
      pageSize: src.pageSize,
      incarnation: currentIncarnation(src.history()).incarnation,
      startLsn: start,
      lastLsn: s.confirmedSent,
      databasePath: src.databasePath,
      history: src.history(),
    });
    this.emit('info', `standby ${s.name} (${s.remote}) connected, streaming from LSN ${start}`);
    this.pump(s);
  }

  /** Why this server cannot continue a standby after lsn (whose commit time it gives), or null when it can. */
  private notHeld(lsn: bigint, commitTimeUs: bigint): ErrorMessage | null {
    const src = this.source;
    if (lsn === 0n) return null;
    if (lsn > src.heldLsn())
      return this.opts.cascade
        ? { t: 'error', code: 'UPSTREAM_BEHIND', message: `the standby holds LSN ${lsn}; this cascading standby holds only up to ${src.heldLsn()} yet`, hint: 'it retries until this server has caught up' }
        : { t: 'error', code: 'STANDBY_AHEAD', message: `the standby holds LSN ${lsn}, past this primary's last LSN ${src.heldLsn()}`, hint: 'the standby followed another history; seed it again from this primary (empty archive directory)' };
    const t = src.commitTimeOf(lsn);
    if (t !== null && t === commitTimeUs) return null;
    const first = src.firstLsn();
    if (t === null && first !== null && lsn < first)
      return { t: 'error', code: 'NEED_BASE', message: `the primary's archive starts at LSN ${first}; the standby needs ${lsn + 1n}`, hint: 'seed the standby again (empty archive directory), or restore the missing segments into the primary archive' };
    return { t: 'error', code: 'DIVERGED', message: `the standby's LSN ${lsn} is not this primary's LSN ${lsn} (other commit time)`, hint: 'the standby followed another history; seed it again from this primary' };
  }

  /**
   * A control request (transport/control.ts): authenticated like a standby, answered by the service's
   * handler with one or more results, then closed. Errors go back as an error message with their hint.
   */
  private onControl(s: Session, c: { op: string; args: string }, cnonce: Uint8Array): void {
    const handler = this.controlHandler ?? this.opts.onControl;
    if (!handler) return this.refuse(s, { t: 'error', code: 'ROLE', message: `this server takes no control requests (${c.op})`, hint: 'send it to a redoship primary or standby' });
    let args: Record<string, unknown>;
    try {
      args = JSON.parse(c.args) as Record<string, unknown>;
    } catch {
      throw new ProtocolError('control args are not JSON');
    }
    s.name = `control ${c.op} (${s.remote})`;
    const mac = serverMac(this.opts.secret, s.nonce, cnonce);
    const send = (body: unknown, more: boolean) => this.send(s, { t: 'result', mac, body: JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)), more });
    handler(c.op, args, (body) => send(body, true)).then(
      (body) => {
        send(body, false);
        setTimeout(() => s.ws.close(), 100).unref();
      },
      (e: unknown) =>
        this.refuse(s, {
          t: 'error',
          code: isRedoshipError(e) ? e.code : 'INTERNAL',
          message: (e as Error).message,
          hint: isRedoshipError(e) ? e.hint : 'see the log of the server',
        }),
    );
  }

  private refuse(s: Session, e: ErrorMessage, log?: string): void {
    this.emit('warning', log ?? `refused standby ${s.name} (${s.remote}): ${e.code}: ${e.message}`);
    this.send(s, e);
    s.authed = false;
    s.cursor = null;
    setTimeout(() => s.ws.terminate(), 200).unref();
    s.ws.close(4000 + Math.min(999, e.code.length), e.code);
  }

  private send(s: Session, m: ServerMessage, cb?: (err?: Error) => void): void {
    if (s.ws.readyState !== s.ws.OPEN) return;
    s.lastSendMs = Date.now();
    s.ws.send(encodeMessage(m), { binary: true }, cb);
  }

  /** send() of a message already encoded (encodeRedoMessage). */
  private sendEncoded(s: Session, data: Buffer, cb: (err?: Error) => void): void {
    if (s.ws.readyState !== s.ws.OPEN) return;
    s.lastSendMs = Date.now();
    s.ws.send(data, { binary: true }, cb);
  }

  /** Sends what the archive holds past what this session was sent, within the in-flight bound. */
  private pump(s: Session): void {
    if (!s.cursor || s.pumping || this.closed) return;
    s.pumping = true;
    const max = this.opts.maxInFlightBytes ?? 16 * 1024 * 1024;
    try {
      while (s.cursor && s.inFlight < max && s.ws.readyState === s.ws.OPEN) {
        const parts = s.cursor.read(MAX_REDO_MESSAGE_BYTES);
        if (parts.length === 0) break;
        let bytes = 0;
        for (const p of parts) bytes += p.raw.length;
        s.inFlight += bytes;
        s.sentLsn = s.cursor.nextLsn - 1n;
        s.confirmedSent = this.source.confirmedLsn();
        const out = encodeRedoMessage(parts, bytes, s.confirmedSent, nowUs(), (n) => this.messageBuffers.take(n));
        this.sendEncoded(s, out, () => {
          // Written to the socket (or the connection is gone): ws holds the bytes no longer.
          this.messageBuffers.give(out);
          s.inFlight -= bytes;
          this.pump(s);
        });
      }
      // What was sent before the archive's sync is confirmed now, unless redo above already said so.
      const confirmed = this.source.confirmedLsn();
      if (s.cursor && s.confirmedSent < confirmed && s.confirmedSent < s.sentLsn) {
        s.confirmedSent = confirmed;
        this.send(s, { t: 'heartbeat', lastLsn: confirmed, timeUs: nowUs() });
      }
    } catch (e) {
      this.refuse(s, { t: 'error', code: isRedoshipError(e) ? e.code : 'INTERNAL', message: `the primary cannot serve this standby: ${(e as Error).message}`, hint: isRedoshipError(e) ? e.hint : 'see the primary log' });
    } finally {
      s.pumping = false;
    }
  }

  private beat(): void {
    const now = Date.now();
    for (const s of this.sessions)
      if (s.authed && now - s.lastSendMs >= (this.opts.heartbeatMs ?? 1000))
        this.send(s, { t: 'heartbeat', lastLsn: (s.confirmedSent = this.source.confirmedLsn()), timeUs: nowUs() });
  }

  /**
   * The archive lost records it had written, and may have sent, before syncing them (the sync failed): every
   * standby is dropped, so that it reconnects and sets aside what it got of them (protocol.ts, confirmation).
   * All of them, not only those sent past the confirmed LSN: a cursor may stand inside a record that is
   * written again, with other contents, under the same LSN. A failed sync is rare; a reconnect is cheap.
   */
  dropUnconfirmed(): void {
    const confirmed = this.source.confirmedLsn();
    for (const s of this.sessions)
      if (s.authed) {
        this.emit('warning', `dropping standby ${s.name} (${s.remote}): the archive failed to make LSN ${confirmed + 1n} and later durable; it reconnects and sets aside what it got of them`);
        s.authed = false;
        s.cursor = null;
        s.ws.terminate();
      }
  }

  standbys(): StandbyInfo[] {
    const last = this.source.lastLsn();
    return [...this.sessions].map((s) => ({
      name: s.name,
      remote: s.remote,
      connectedAt: s.connectedAt,
      state: s.authed ? ('streaming' as const) : ('handshake' as const),
      sentLsn: String(s.sentLsn),
      receivedLsn: String(s.received),
      durableLsn: String(s.durable),
      appliedLsn: String(s.applied),
      lagRecords: String(last > s.durable ? last - s.durable : 0n),
      lastAckAgeMs: s.lastAckMs === null ? null : Date.now() - s.lastAckMs,
    }));
  }

  /** Resolves when at least n standbys hold lsn durably; rejects after timeoutMs. */
  waitForDurable(lsn: bigint, n: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const w = {
        lsn,
        n,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error(`LSN ${lsn} was not durable on ${n} standby(s) within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(w);
      this.settleWaiters();
    });
  }

  private settleWaiters(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      let have = 0;
      for (const s of this.sessions) if (s.authed && s.durable >= w.lsn) have++;
      if (have >= w.n) {
        clearTimeout(w.timer);
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.heartbeat);
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error('the redo server stopped'));
    }
    for (const s of this.sessions) s.ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
    await new Promise<void>((r) => this.http.close(() => r()));
  }
}

/*
 * A redo message, { t: 'redo', parts, lastLsn, timeUs }, byte for byte as encodeMessage (msgpackr) writes it,
 * with the framed parts copied once, straight into the message: a map16 of 4 (0xde 00 04), fixstr keys in
 * that order, 'redo' a fixstr, parts a bin8/16/32, lastLsn and timeUs int64 (0xd3) below 2^63. A value outside
 * that (never, for LSNs and microsecond times) goes through encodeMessage. server.test.ts holds the two to the
 * same bytes.
 */
const REDO_HEAD = Buffer.from([0xde, 0x00, 0x04, 0xa1, 0x74, 0xa4, ...Buffer.from('redo'), 0xa5, ...Buffer.from('parts')]);
const LAST_LSN_KEY = Buffer.from([0xa7, ...Buffer.from('lastLsn')]);
const TIME_US_KEY = Buffer.from([0xa6, ...Buffer.from('timeUs')]);
const INT64_LIMIT = 0x8000000000000000n;

/** The redo message carrying parts (bytes: their total length). */
export function encodeRedoMessage(
  parts: ReadonlyArray<{ readonly raw: Uint8Array }>,
  bytes: number,
  lastLsn: bigint,
  timeUs: bigint,
  alloc: (size: number) => Buffer = Buffer.allocUnsafe,
): Buffer {
  if (lastLsn < 0n || lastLsn >= INT64_LIMIT || timeUs < 0n || timeUs >= INT64_LIMIT)
    return encodeMessage({ t: 'redo', parts: Buffer.concat(parts.map((p) => p.raw)), lastLsn, timeUs });
  const out = alloc(REDO_HEAD.length + binHeadBytes(bytes) + bytes + LAST_LSN_KEY.length + 9 + TIME_US_KEY.length + 9);
  let at = putBinHead(out, REDO_HEAD.copy(out, 0), bytes);
  for (const p of parts) {
    out.set(p.raw, at);
    at += p.raw.length;
  }
  at = putBigint(out, at + LAST_LSN_KEY.copy(out, at), lastLsn);
  at = putBigint(out, at + TIME_US_KEY.copy(out, at), timeUs);
  if (at !== out.length) throw new Error(`assert: encoded a redo message of ${at} bytes into ${out.length}`);
  return out;
}

/** Listens, or fails with a RedoshipError that says why (the port is taken, the address is not ours). */
export async function listenOrExplain(server: HttpServer, host: string, port: number, flag: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EADDRNOTAVAIL' ? 'that address is not on this machine' : e.code === 'EACCES' ? 'permission denied' : e.message;
      reject(new RedoshipError('USAGE', `cannot listen on ${host}:${port}: ${why}`, `choose another ${flag} address (HOST:PORT)`, { cause: e }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Checks that host:port can be listened on, and frees it again: so that a daemon refuses before it changes anything. */
export async function checkListenable(host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return;
  const probe = createHttpServer();
  await listenOrExplain(probe, host, port, flag);
  await new Promise<void>((r) => probe.close(() => r()));
}
