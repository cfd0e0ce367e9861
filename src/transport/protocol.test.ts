/**
 * The protocol decoders, fuzzed: random bytes, truncations and flipped bits of valid messages never throw
 * anything but ProtocolError, and never yield a message whose fields are out of their types.
 */
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { FIRST_INCARNATION } from '../redo/index.js';
import {
  PROTOCOL_VERSION,
  ProtocolError,
  clientMac,
  decodeClientMessage,
  decodeServerMessage,
  encodeMessage,
  macEqual,
  serverMac,
  type ClientMessage,
  type ServerMessage,
} from './protocol.js';
import { prng } from '../../test/helpers/prng.js';


const nonce = Buffer.alloc(32, 7);
const FORKED = [FIRST_INCARNATION, { incarnation: 2, forkLsn: 40n, id: '00112233445566ff', at: '2026-11-22T00:00:00.000Z', reason: 'promoted' }];
const valid: { server: ServerMessage[]; client: ClientMessage[] } = {
  server: [
    { t: 'challenge', v: PROTOCOL_VERSION, nonce },
    { t: 'welcome', mac: Buffer.alloc(32, 1), databaseId: 'ab'.repeat(16), pageSize: 4096, incarnation: 1, startLsn: 5n, lastLsn: 9n, databasePath: '/x/app.db', history: [FIRST_INCARNATION] },
    { t: 'welcome', mac: Buffer.alloc(32, 1), databaseId: 'ab'.repeat(16), pageSize: 4096, incarnation: 2, startLsn: 5n, lastLsn: 9n, databasePath: '/x/app.db', history: FORKED },
    { t: 'result', mac: Buffer.alloc(32, 1), body: '{"role":"primary"}', more: false },
    { t: 'redo', parts: Buffer.from('framed parts'), lastLsn: 123n, timeUs: 1_800_000_000_000_000n },
    { t: 'heartbeat', lastLsn: 2n ** 40n, timeUs: 1n },
    { t: 'error', code: 'AUTH', message: 'no', hint: 'try again' },
  ],
  client: [
    { t: 'hello', v: PROTOCOL_VERSION, mac: Buffer.alloc(32, 2), cnonce: nonce, databaseId: null, incarnation: 1, lastLsn: 0n, lastCommitTimeUs: 0n, confirmedLsn: 0n, confirmedCommitTimeUs: 0n, name: 'dr', history: [FIRST_INCARNATION] },
    { t: 'hello', v: PROTOCOL_VERSION, mac: Buffer.alloc(32, 2), cnonce: nonce, databaseId: 'cd'.repeat(16), incarnation: 2, lastLsn: 77n, lastCommitTimeUs: 5n, confirmedLsn: 70n, confirmedCommitTimeUs: 4n, name: 'dr', history: FORKED },
    { t: 'ack', received: 1n, durable: 1n, applied: 0n, timeUs: 3n },
    { t: 'hello', v: PROTOCOL_VERSION, mac: Buffer.alloc(32, 2), cnonce: nonce, databaseId: null, incarnation: 0, lastLsn: 0n, lastCommitTimeUs: 0n, confirmedLsn: 0n, confirmedCommitTimeUs: 0n, name: 'control', history: [FIRST_INCARNATION], control: { op: 'describe', args: '{}' } },
  ],
};

function checkTyped(m: ServerMessage | ClientMessage): void {
  for (const [k, v] of Object.entries(m)) {
    if (['lastLsn', 'startLsn', 'timeUs', 'received', 'durable', 'applied', 'lastCommitTimeUs', 'confirmedLsn', 'confirmedCommitTimeUs'].includes(k)) expect(typeof v).toBe('bigint');
    if (['mac', 'nonce', 'cnonce'].includes(k)) expect((v as Uint8Array).length).toBe(32);
    if (k === 'databaseId' && v !== null) expect(v).toMatch(/^[0-9a-f]{32}$/);
  }
}

describe('protocol', () => {
  test('a history that is out of order, or not a list, is refused', () => {
    const bad = (history: unknown) => () => decodeServerMessage(encodeMessage({ ...(valid.server[1] as object), history } as unknown as ServerMessage));
    expect(bad([FORKED[1], FORKED[0]])).toThrow(ProtocolError);
    expect(bad('x')).toThrow(ProtocolError);
    expect(bad([{ ...FORKED[1], forkLsn: -1 }])).toThrow(ProtocolError);
    expect(bad([])).toThrow(ProtocolError);
  });

  test('every message round-trips', () => {
    for (const m of valid.server) expect(decodeServerMessage(encodeMessage(m))).toEqual({ ...m });
    for (const m of valid.client) expect(decodeClientMessage(encodeMessage(m))).toEqual({ ...m });
  });

  test('a message of the other direction, or with a wrong field, is a ProtocolError', () => {
    expect(() => decodeServerMessage(encodeMessage(valid.client[2]!))).toThrow(ProtocolError);
    expect(() => decodeClientMessage(encodeMessage(valid.server[0]!))).toThrow(ProtocolError);
    expect(() => decodeClientMessage(encodeMessage({ ...valid.client[2]!, durable: -1n } as ClientMessage))).toThrow(ProtocolError);
    expect(() => decodeServerMessage(encodeMessage({ ...(valid.server[1] as object), databaseId: 'not hex' } as unknown as ServerMessage))).toThrow(ProtocolError);
    expect(() => decodeServerMessage(encodeMessage({ ...(valid.server[0] as object), nonce: Buffer.alloc(31) } as unknown as ServerMessage))).toThrow(ProtocolError);
  });

  test('HMAC proofs: each side proves the secret over both nonces; a wrong secret or swapped nonces fail', () => {
    const secret = randomBytes(32);
    const c = randomBytes(32);
    expect(macEqual(clientMac(secret, nonce, c), clientMac(secret, nonce, c))).toBe(true);
    expect(macEqual(clientMac(secret, nonce, c), clientMac(randomBytes(32), nonce, c))).toBe(false);
    expect(macEqual(clientMac(secret, nonce, c), serverMac(secret, nonce, c))).toBe(false); // no reflection
    expect(macEqual(clientMac(secret, nonce, c), clientMac(secret, c, nonce))).toBe(false);
  });

  for (const seed of [1, 2, 3])
    test(`fuzz (seed ${seed}): random, truncated and bit-flipped messages throw only ProtocolError`, () => {
      const rnd = prng(seed);
      const all = [...valid.server.map((m) => ({ m, dec: decodeServerMessage })), ...valid.client.map((m) => ({ m, dec: decodeClientMessage }))];
      let accepted = 0;
      for (let i = 0; i < 3000; i++) {
        const { m, dec } = all[Math.floor(rnd() * all.length)]!;
        let buf = Buffer.from(encodeMessage(m));
        const kind = rnd();
        if (kind < 0.3) buf = buf.subarray(0, Math.floor(rnd() * buf.length));
        else if (kind < 0.7) buf[Math.floor(rnd() * buf.length)] ^= 1 << Math.floor(rnd() * 8);
        else buf = randomBytes(1 + Math.floor(rnd() * 64));
        try {
          checkTyped(dec(buf));
          accepted++;
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
      }
      // Some flips land in payload bytes (a name, a nonce) and still decode: that is fine, the fields are typed.
      expect(accepted).toBeGreaterThan(0);
    });
});
