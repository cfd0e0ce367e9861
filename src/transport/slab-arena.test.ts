import { describe, expect, test } from 'vitest';
import { prng } from '../drill/prng.js';
import { BufferPool } from './buffer-pool.js';
import { SlabArena } from './slab-arena.js';

/**
 * Buffers handed out and not yet given back must never share a byte; given-back memory is used again (that
 * is the point). Random sequences of take/give, each live buffer filled with its own byte and checked.
 */
/** Every byte of b is fill (compared as a block: a byte-by-byte callback over megabytes takes seconds). */
const allAre = (b: Buffer, fill: number): boolean => b.equals(Buffer.alloc(b.length, fill));

function exercise(take: (n: number) => Buffer, give: (b: Buffer) => void, sizes: (r: () => number) => number, seed: number): { reusedBytes: number } {
  const r = prng(seed);
  const live: Array<{ b: Buffer; fill: number }> = [];
  const seen = new Set<ArrayBufferLike>();
  let reusedBytes = 0;
  for (let step = 0; step < 4000; step++) {
    if (live.length > 0 && r() < 0.45) {
      const k = Math.floor(r() * Math.min(live.length, 4)); // mostly oldest first, as the ring drops them
      const [{ b, fill }] = live.splice(k, 1);
      expect(allAre(b, fill)).toBe(true);
      give(b);
    } else {
      const n = sizes(r);
      const b = take(n);
      expect(b.length).toBe(n);
      if (seen.has(b.buffer)) reusedBytes += n;
      seen.add(b.buffer);
      const fill = step & 0xff;
      b.fill(fill);
      live.push({ b, fill });
    }
    for (const { b, fill } of live.slice(-3)) expect(b[0] === fill && b[b.length - 1] === fill).toBe(true);
  }
  for (const { b, fill } of live) expect(allAre(b, fill)).toBe(true);
  return { reusedBytes };
}

describe('SlabArena', () => {
  test('live buffers never overlap, and slabs are used again once all their buffers are back', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const a = new SlabArena();
      const { reusedBytes } = exercise(a.take, (b) => a.give(b), (r) => 1 + Math.floor(r() * (r() < 0.05 ? 400_000 : 40_000)), seed);
      expect(reusedBytes).toBeGreaterThan(0);
    }
  });

  test('a buffer it did not make changes nothing', () => {
    const a = new SlabArena();
    const x = a.take(100);
    x.fill(7);
    for (let i = 0; i < 100; i++) a.give(Buffer.alloc(100));
    // Were those counted against x's slab, it would be free, and later slabs' buffers would land on x.
    for (let i = 0; i < 50; i++) a.take(100_000).fill(1);
    expect(allAre(x, 7)).toBe(true);
  });
});

describe('BufferPool', () => {
  test('live buffers never overlap, and buffers given back are used again', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const p = new BufferPool();
      const { reusedBytes } = exercise((n) => p.take(n), (b) => p.give(b), (r) => 1 + Math.floor(r() * (r() < 0.05 ? 9_000_000 : 300_000)), seed);
      expect(reusedBytes).toBeGreaterThan(0);
    }
  });

  test('what it keeps is bounded: three 8 MiB buffers of ten given back', () => {
    const p = new BufferPool();
    const taken = Array.from({ length: 10 }, () => p.take(5 * 1024 * 1024));
    for (const b of taken) p.give(b);
    const again = Array.from({ length: 10 }, () => p.take(5 * 1024 * 1024));
    const reused = again.filter((b) => taken.some((t) => t.buffer === b.buffer)).length;
    expect(reused).toBe(3); // KEEP_BYTES (24 MiB) of the 8 MiB class
  });

  test('a buffer given twice is kept once', () => {
    const p = new BufferPool();
    const x = p.take(70_000);
    p.give(x);
    p.give(x);
    const y = p.take(70_000);
    const z = p.take(70_000);
    expect(y.buffer).not.toBe(z.buffer);
  });
});
