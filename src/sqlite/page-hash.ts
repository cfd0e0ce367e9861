/*
 * PAGE HASHES. A page hash is 16 bytes computed over the page image (page 1 with the header fields that
 * depend on the journal mode or the writer masked: see db-header.ts). 128 bits keeps the chance that two
 * different images of one page collide far below that of an undetected disk error. Two algorithms:
 *
 *   xxh3-128    XXH3's 128-bit hash (seed 0), in its canonical form (big-endian: high 64 bits first), as
 *               xxHash's reference implementation gives it. What everything computes now.
 *   sha256-128  the first 16 bytes of SHA-256. Backup sets written before the manifest named its algorithm
 *               (repo.ts) hold these, and are still read with them.
 *
 * Why XXH3 and not SHA-256: every page of a backup and of a restore is hashed, and SHA-256 (with the CPU's
 * SHA extensions, ~1.1 GiB/s per 4 KiB page here) was the largest single cost of both, a third of a
 * restore's CPU; XXH3-128 through xxhash-addon (the reference C code, vectorised) takes ~1.2 microseconds a
 * page, call included, against ~3.5. A page hash guards against damage, not against an attacker: anyone who
 * can rewrite a piece can rewrite its manifest and page-hash file too, so an unkeyed SHA-256 never stopped
 * one; encrypted sets are authenticated by AES-GCM (key.ts, piece.ts). Against damage, XXH3-128 (it passes
 * SMHasher's tests of hash quality) keeps, like a truncated SHA-256, the chance of a miss at about 2^-128.
 */
import * as crypto from 'node:crypto';
import xxhash from 'xxhash-addon';
import { maskPage1 } from './db-header.js';

export type PageHashAlgorithm = 'xxh3-128' | 'sha256-128';
/** What pages are hashed with now. */
export const PAGE_HASH_ALGORITHM: PageHashAlgorithm = 'xxh3-128';
export const PAGE_HASH_ALGORITHMS: readonly PageHashAlgorithm[] = ['xxh3-128', 'sha256-128'];

/**
 * The algorithm a manifest or a peer names: absent (written before the name was recorded) is sha256-128;
 * a name this version does not know is null (the caller refuses it).
 */
export function pageHashAlgorithmNamed(name: unknown): PageHashAlgorithm | null {
  if (name === undefined || name === null) return 'sha256-128';
  return PAGE_HASH_ALGORITHMS.find((a) => a === name) ?? null;
}

export const PAGE_HASH_BYTES = 16;

// The addon's declaration says Buffer; it reads any typed-array view (napi_get_buffer_info), shared memory
// included, and its prebuilt binary does not check: the Uint8Array type is what keeps other values out.
const xxh3x128 = (data: Uint8Array): Buffer => xxhash.XXHash128.hash(data as Buffer);
const sha256x128 = (data: Uint8Array): Buffer => crypto.createHash('sha256').update(data).digest().subarray(0, PAGE_HASH_BYTES);
const hashers: Record<PageHashAlgorithm, (data: Uint8Array) => Buffer> = { 'xxh3-128': xxh3x128, 'sha256-128': sha256x128 };

export function pageHash(pgno: number, page: Uint8Array, algorithm: PageHashAlgorithm = PAGE_HASH_ALGORITHM): Buffer {
  return hashers[algorithm](pgno === 1 ? maskPage1(page) : page);
}

/** pageHash(pgno, page, algorithm) into out[offset, offset + PAGE_HASH_BYTES). */
export function pageHashInto(pgno: number, page: Uint8Array, out: Buffer, offset: number, algorithm: PageHashAlgorithm = PAGE_HASH_ALGORITHM): void {
  pageHash(pgno, page, algorithm).copy(out, offset, 0, PAGE_HASH_BYTES);
}
