/**
 * Control requests over the redo protocol (protocol.ts: hello with `control`, answered by `result`s): how
 * `switchover` and `reinstate` talk to a running primary or standby. The same shared secret is proved both
 * ways as for a standby, so only a holder of the secret can move a role, and the answer is known to come
 * from one. One request per connection; the connection closes after the last result.
 */
import { ERROR_CODES, RedoshipError, type ErrorCode } from '../error/index.js';
import { FIRST_INCARNATION } from '../redo/index.js';
import { openSocket, type TlsClientOptions } from './client.js';
import {
  PROTOCOL_VERSION,
  ProtocolError,
  clientMac,
  decodeServerMessage,
  encodeMessage,
  macEqual,
  newNonce,
  serverMac,
} from './protocol.js';

export interface ControlRequest {
  readonly url: string;
  readonly secret: Uint8Array;
  readonly tls?: TlsClientOptions;
  readonly op: string;
  readonly args?: Record<string, unknown>;
  /** Default 30 s. */
  readonly timeoutMs?: number;
  /** Intermediate results, in order. */
  readonly onPartial?: (body: unknown) => void;
}

export function controlRequest(r: ControlRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const ws = openSocket(r.url, r.tls);
    const cnonce = newNonce();
    let nonce: Uint8Array | null = null;
    let done = false;
    const finish = (e: Error | null, v?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.terminate();
      if (e) reject(e);
      else resolve(v);
    };
    const timer = setTimeout(
      () => finish(new RedoshipError('PEER_UNREACHABLE', `${r.url} did not answer the ${r.op} request within ${Math.round((r.timeoutMs ?? 30_000) / 1000)} s`, 'check that the redoship process there is running and reachable')),
      r.timeoutMs ?? 30_000,
    );
    ws.on('error', (e) => finish(new RedoshipError('PEER_UNREACHABLE', `cannot reach ${r.url}: ${e.message}`, 'check the URL and that a redoship primary or standby listens there')));
    ws.on('close', () => finish(new RedoshipError('PEER_UNREACHABLE', `${r.url} closed the connection before answering ${r.op}`, 'see the log of the redoship process there')));
    ws.on('message', (data, isBinary) => {
      try {
        if (!isBinary) throw new ProtocolError('text message');
        const m = decodeServerMessage(data as Buffer);
        // The peer's own error code when it is one of ours (its exit status then says the same as there).
        if (m.t === 'error')
          return finish(new RedoshipError(m.code in ERROR_CODES ? (m.code as ErrorCode) : 'PEER_REFUSED', `${r.url} refused ${r.op}: ${m.message}`, m.hint));
        if (!nonce) {
          if (m.t !== 'challenge') throw new ProtocolError(`expected challenge, got ${m.t}`);
          if (m.v !== PROTOCOL_VERSION)
            return finish(new RedoshipError('PEER_REFUSED', `${r.url} speaks protocol version ${m.v}; this redoship speaks ${PROTOCOL_VERSION}`, 'run the same redoship version everywhere'));
          nonce = m.nonce;
          ws.send(
            encodeMessage({
              t: 'hello',
              v: PROTOCOL_VERSION,
              mac: clientMac(r.secret, m.nonce, cnonce),
              cnonce,
              databaseId: null,
              incarnation: 0,
              lastLsn: 0n,
              lastCommitTimeUs: 0n,
              confirmedLsn: 0n,
              confirmedCommitTimeUs: 0n,
              name: `control ${r.op}`,
              history: [FIRST_INCARNATION],
              control: { op: r.op, args: JSON.stringify(r.args ?? {}, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) },
            }),
          );
          return;
        }
        if (m.t !== 'result') throw new ProtocolError(`expected result, got ${m.t}`);
        if (!macEqual(m.mac, serverMac(r.secret, nonce, cnonce)))
          return finish(new RedoshipError('PEER_REFUSED', `${r.url} did not prove the shared secret`, 'give the same --token-file as the primary and standbys use'));
        const body = JSON.parse(m.body) as unknown;
        if (m.more) r.onPartial?.(body);
        else finish(null, body);
      } catch (e) {
        finish(e instanceof ProtocolError ? new RedoshipError('PEER_REFUSED', `${r.url} sent something unexpected: ${e.message}`, 'run the same redoship version everywhere') : (e as Error));
      }
    });
  });
}
