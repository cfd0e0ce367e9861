/**
 * The standby's side of the redo protocol: connects, proves the secret, checks the server's proof, says what
 * it holds, and hands every redo message to the receiver, which must make it durable before returning (the
 * ack says so). Reconnects after network failures with exponential backoff and jitter; stops for good on
 * refusals that retrying cannot cure (wrong secret, wrong database, version, diverged history, a server
 * certificate it cannot trust).
 *
 * Redo messages are handled synchronously in the 'message' handler, one at a time: while the receiver
 * writes and syncs, this socket is not read, so TCP carries the backpressure to the primary.
 */
import { WebSocket } from 'ws';
import { RedoshipError } from '../error/index.js';
import type { History } from '../redo/index.js';
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  clientMac,
  decodeServerMessage,
  encodeMessage,
  macEqual,
  newNonce,
  nowUs,
  serverMac,
  type ClientMessage,
  type Welcome,
} from './protocol.js';

export interface TlsClientOptions {
  /** CA that signed the server's certificate (for self-signed certificates). */
  readonly ca?: string | Buffer;
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/** What the standby holds, asked afresh at every (re)connect. */
export interface HeldPosition {
  readonly databaseId: string | null;
  readonly incarnation: number;
  /** Last complete LSN held durably (0 when none). */
  readonly lastLsn: bigint;
  readonly lastCommitTimeUs: bigint;
  /** Last LSN held that the primary confirmed durable (protocol.ts, confirmation), and its commit time. */
  readonly confirmedLsn: bigint;
  readonly confirmedCommitTimeUs: bigint;
  readonly history: History;
}

export interface RedoClientOptions {
  readonly url: string;
  readonly secret: Uint8Array;
  readonly name: string;
  readonly tls?: TlsClientOptions;
  readonly held: () => HeldPosition;
  /**
   * After welcome: the receiver prepares to take parts from welcome.startLsn (e.g. drops a torn record, sets
   * aside an unconfirmed tail the primary lost). welcome.lastLsn is the primary's confirmed LSN. Returns the
   * LSN it holds durably then (what acks say until redo moves it).
   */
  readonly onWelcome: (w: Welcome) => bigint;
  /**
   * Parts to make durable; returns the LSN now held durably. Throws RedoshipError to refuse them.
   * primaryLastLsn: the primary's confirmed LSN (parts may run ahead of it).
   */
  readonly onRedo: (parts: Uint8Array, primaryLastLsn: bigint, primaryTimeUs: bigint) => bigint;
  /** A heartbeat, which also confirms: primaryLastLsn is the primary's confirmed LSN. */
  readonly onHeartbeat?: (primaryLastLsn: bigint, primaryTimeUs: bigint) => void;
  /** The LSN the standby has applied, for acks. */
  readonly applied: () => bigint;
  readonly onEvent?: (e: { type: 'info' | 'warning'; message: string }) => void;
  /** Called once when the client stops for good because of a refusal. */
  readonly onFatal?: (e: RedoshipError) => void;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

const FATAL = new Set(['AUTH', 'VERSION', 'WRONG_DATABASE', 'DIVERGED', 'STANDBY_AHEAD', 'NEED_BASE', 'FENCED', 'PROTOCOL']);
/** TLS errors (Node's codes) that say the server's certificate is not trusted for this URL. */
const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A WebSocket to a redo server: protocol limits, no compression, and the TLS trust and identity given. */
export function openSocket(url: string, t: TlsClientOptions | undefined): WebSocket {
  return new WebSocket(url, {
    maxPayload: MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
    ...(t?.ca ? { ca: t.ca } : {}),
    ...(t?.cert ? { cert: t.cert } : {}),
    ...(t?.key ? { key: t.key } : {}),
  });
}

export class RedoClient {
  private ws: WebSocket | null = null;
  private stopped = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  connected = false;
  lastError: string | null = null;
  primaryLastLsn = 0n;
  /** Primary clock minus ours at the last message, µs (includes one-way network delay). */
  clockSkewUs = 0n;
  lastMessageMs = 0;
  durable = 0n;

  constructor(private readonly opts: RedoClientOptions) {}

  start(): void {
    this.connect();
    this.ackTimer = setInterval(() => this.sendAck(), 500);
  }

  private emit(type: 'info' | 'warning', message: string): void {
    this.opts.onEvent?.({ type, message });
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = openSocket(this.opts.url, this.opts.tls);
    this.ws = ws;
    const cnonce = newNonce();
    let serverNonce: Uint8Array | null = null;
    let welcomed = false;
    ws.on('message', (data, isBinary) => {
      try {
        if (!isBinary) throw new ProtocolError('text message');
        const m = decodeServerMessage(data as Buffer);
        this.lastMessageMs = Date.now();
        if (m.t === 'error') {
          const err = new RedoshipError(
            m.code === 'WRONG_DATABASE' || m.code === 'FENCED' || m.code === 'DIVERGED' ? m.code : 'PEER_REFUSED',
            `the primary refused this standby: ${m.code}: ${m.message}`,
            m.hint,
          );
          if (FATAL.has(m.code)) return this.fatal(err);
          this.lastError = err.message;
          this.emit('warning', err.message);
          return;
        }
        if (!serverNonce) {
          if (m.t !== 'challenge') throw new ProtocolError(`expected challenge, got ${m.t}`);
          if (m.v !== PROTOCOL_VERSION)
            return this.fatal(new RedoshipError('PEER_REFUSED', `the primary speaks protocol version ${m.v}; this standby speaks ${PROTOCOL_VERSION}`, 'run the same redoship version on the primary and its standbys'));
          serverNonce = m.nonce;
          const held = this.opts.held();
          this.send({
            t: 'hello',
            v: PROTOCOL_VERSION,
            mac: clientMac(this.opts.secret, m.nonce, cnonce),
            cnonce,
            databaseId: held.databaseId,
            incarnation: held.incarnation,
            lastLsn: held.lastLsn,
            lastCommitTimeUs: held.lastCommitTimeUs,
            confirmedLsn: held.confirmedLsn,
            confirmedCommitTimeUs: held.confirmedCommitTimeUs,
            name: this.opts.name,
            history: held.history,
          });
          return;
        }
        if (!welcomed) {
          if (m.t !== 'welcome') throw new ProtocolError(`expected welcome, got ${m.t}`);
          if (!macEqual(m.mac, serverMac(this.opts.secret, serverNonce, cnonce)))
            return this.fatal(new RedoshipError('PEER_REFUSED', `${this.opts.url} did not prove the shared secret`, 'check that --from names your primary and that both sides use the same --token-file'));
          welcomed = true;
          this.connected = true;
          this.attempt = 0;
          this.lastError = null;
          this.primaryLastLsn = m.lastLsn;
          this.durable = this.opts.onWelcome(m);
          this.emit('info', `connected to ${this.opts.url}; receiving from LSN ${m.startLsn} (primary at ${m.lastLsn})`);
          return;
        }
        if (m.t === 'redo') {
          this.primaryLastLsn = m.lastLsn;
          this.clockSkewUs = m.timeUs - nowUs();
          this.durable = this.opts.onRedo(m.parts, m.lastLsn, m.timeUs);
          this.sendAck();
        } else if (m.t === 'heartbeat') {
          this.primaryLastLsn = m.lastLsn;
          this.clockSkewUs = m.timeUs - nowUs();
          this.opts.onHeartbeat?.(m.lastLsn, m.timeUs);
        } else throw new ProtocolError(`unexpected ${m.t}`);
      } catch (e) {
        if (e instanceof ProtocolError) {
          this.lastError = `protocol error from ${this.opts.url}: ${e.message}`;
          this.emit('warning', this.lastError);
          this.send({ t: 'error', code: 'PROTOCOL', message: e.message, hint: 'are both sides the same redoship version?' });
          ws.terminate();
        } else if (e instanceof RedoshipError && (e.code === 'FENCED' || e.code === 'DIVERGED')) {
          // This standby's own check of the primary's history (welcome): never retried against that peer.
          this.send({ t: 'error', code: e.code, message: e.message, hint: e.hint });
          ws.terminate();
          this.fatal(e);
        } else if (e instanceof RedoshipError) {
          // The receiver refused what it got (damaged parts, a full disk): say so, drop the link, retry.
          this.lastError = `${e.message}; ${e.hint}`;
          this.emit('warning', this.lastError);
          this.send({ t: 'error', code: e.code, message: e.message, hint: e.hint });
          ws.terminate();
        } else {
          // A bug, not the peer's fault: say so loudly, drop the link, and retry (never crash the standby).
          this.lastError = `internal error handling a message from ${this.opts.url}: ${(e as Error)?.stack ?? String(e)}`;
          this.emit('warning', this.lastError);
          ws.terminate();
        }
      }
    });
    let untrusted: RedoshipError | null = null;
    ws.on('error', (e) => {
      this.lastError = `${this.opts.url}: ${e.message}`;
      // The standby refuses a primary whose certificate it cannot trust, as it refuses one that does not prove
      // the secret: a configuration matter that retrying cannot cure.
      if (UNTRUSTED_CERTIFICATE.has((e as NodeJS.ErrnoException).code ?? ''))
        untrusted = new RedoshipError(
          'PEER_REFUSED',
          `the certificate of ${this.opts.url} is not trusted: ${e.message}`,
          (e as NodeJS.ErrnoException).code === 'ERR_TLS_CERT_ALTNAME_INVALID'
            ? 'connect with a host name the certificate names (--from), or give the primary a certificate for this name'
            : "give --tls-ca the CA certificate that signed the primary's certificate (for a self-signed certificate: the certificate itself)",
        );
    });
    ws.on('close', () => {
      this.connected = false;
      if (this.ws === ws) this.ws = null;
      if (untrusted) return this.fatal(untrusted);
      this.scheduleReconnect();
    });
  }

  private fatal(e: RedoshipError): void {
    this.lastError = e.message;
    this.stop();
    this.opts.onFatal?.(e);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer) return;
    const min = this.opts.minBackoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 10_000;
    const base = Math.min(max, min * 2 ** this.attempt++);
    const delay = base / 2 + Math.random() * (base / 2); // "equal jitter"
    if (this.attempt === 3) this.emit('warning', `cannot reach ${this.opts.url} (${this.lastError ?? 'closed'}); retrying with backoff`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private send(m: ClientMessage): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeMessage(m), { binary: true });
  }

  sendAck(): void {
    if (!this.connected) return;
    this.send({ t: 'ack', received: this.durable, durable: this.durable, applied: this.opts.applied(), timeUs: nowUs() });
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.ackTimer) clearInterval(this.ackTimer);
    this.retryTimer = null;
    this.ws?.close();
    this.ws?.terminate();
  }
}
