/*
 * PAGE HASHES. A page hash is the first 16 bytes of SHA-256 over the page image (page 1 with the header
 * fields that depend on the journal mode or the writer masked: see db-header.ts). 128 bits keeps the chance
 * that two different images of one page collide far below that of an undetected disk error; SHA-256 runs
 * ~1 GB/s here with the CPU's SHA extensions, faster than any other digest Node ships.
 */
import { createHash } from 'node:crypto';
import { maskPage1 } from './db-header.js';

export const PAGE_HASH_BYTES = 16;

export function pageHash(pgno: number, page: Uint8Array): Buffer {
  const h = createHash('sha256');
  h.update(pgno === 1 ? maskPage1(page) : page);
  return h.digest().subarray(0, PAGE_HASH_BYTES);
}
