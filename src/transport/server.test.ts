import { describe, expect, test } from 'vitest';
import { decodeServerMessage, encodeMessage } from './protocol.js';
import { encodeRedoMessage } from './server.js';

describe('encodeRedoMessage', () => {
  const parts = (sizes: number[]) =>
    sizes.map((n, k) => {
      const raw = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) raw[i] = (i * 31 + k * 7) & 0xff;
      return { raw };
    });

  test('the bytes encodeMessage writes, at every bin length boundary and for LSNs and times up to 2^64', () => {
    const sizes = [[0], [1], [255], [256], [100, 155], [100, 156], [65535], [65536], [40000, 25536], [3, 70000, 5], [1 << 20]];
    const bigs = [0n, 1n, 127n, 128n, 0xffffffffn, 0x100000000n, 1_763_800_000_000_000n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
    for (const s of sizes)
      for (const lastLsn of bigs)
        for (const timeUs of [bigs[6]!, lastLsn]) {
          const p = parts(s);
          const bytes = s.reduce((a, b) => a + b, 0);
          const got = encodeRedoMessage(p, bytes, lastLsn, timeUs);
          const want = encodeMessage({ t: 'redo', parts: Buffer.concat(p.map((x) => x.raw)), lastLsn, timeUs });
          expect(got.equals(want), `${s} ${lastLsn} ${timeUs}`).toBe(true);
        }
  });

  test('decodes as the redo message it carries', () => {
    const p = parts([10, 20]);
    const m = decodeServerMessage(encodeRedoMessage(p, 30, 42n, 7n));
    expect(m).toMatchObject({ t: 'redo', lastLsn: 42n, timeUs: 7n });
    expect(Buffer.from((m as { parts: Uint8Array }).parts).equals(Buffer.concat(p.map((x) => x.raw)))).toBe(true);
  });
});
