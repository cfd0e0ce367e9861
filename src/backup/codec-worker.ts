/**
 * A codec worker thread (codec-pool.ts starts them): encodes chunks for backups (page hashes, compression,
 * encryption, CRC), restores chunks (reads the stored bytes, checks the CRC, decrypts, decompresses, checks
 * the page hashes, writes the pages to the target file), and takes the SHA-256 of whole pieces, so that a
 * backup or restore uses every core. It opens no file (it reads and writes the descriptors it is given) and
 * keeps no state but zstd contexts. Messages are codec-pool.ts's CodecRequest / CodecReply.
 */
import { createHash, type Hash } from 'node:crypto';
import { readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { ioError, isRedoshipError } from '../error/index.js';
import { PAGE_HASH_BYTES } from '../sqlite/page-hash.js';
import { decodeChunk, encodeChunkBuffer } from './chunk-codec.js';
import { pieceCorrupt } from './piece.js';
import type { CodecReply, CodecRequest } from './codec-pool.js';

/** Open PieceHashers' state, by hasher id. */
const hashers = new Map<number, Hash>();

function handle(m: CodecRequest): { reply: CodecReply; transfer: ArrayBuffer[] } {
  if (m.op === 'hash-update') {
    let h = hashers.get(m.hasher);
    if (!h) hashers.set(m.hasher, (h = createHash('sha256')));
    h.update(new Uint8Array(m.bytes, m.start, m.length));
    return { reply: { id: m.id, ok: true, op: 'hash-update' }, transfer: [] };
  }
  if (m.op === 'hash-digest') {
    const hex = (hashers.get(m.hasher) ?? createHash('sha256')).digest('hex');
    hashers.delete(m.hasher);
    return { reply: { id: m.id, ok: true, op: 'hash-digest', hex }, transfer: [] };
  }
  const key = m.key ? Buffer.from(m.key) : undefined;
  if (m.op === 'encode') {
    const { framed, hashes, inPlace } = encodeChunkBuffer(Buffer.from(m.buf), m.count, m.pageSize, { algorithm: m.algorithm, level: m.level }, key);
    return { reply: { id: m.id, ok: true, op: 'encode', framed, hashes, inPlace }, transfer: [hashes.buffer as ArrayBuffer] };
  }
  // restore
  const slab = Buffer.from(m.slab);
  if (m.readFd >= 0) {
    for (let done = 0; done < m.length; ) {
      let got: number;
      try {
        got = readSync(m.readFd, slab, m.start + done, m.length - done, m.readAt + done);
      } catch (e) {
        throw ioError('read backup piece', m.name, e);
      }
      if (got === 0) throw pieceCorrupt(m.name, m.offset, 'the piece ends inside a chunk (truncated)');
      done += got;
    }
  }
  const into = m.rawAt >= 0 ? slab.subarray(m.rawAt, m.rawAt + m.count * (4 + m.pageSize)) : undefined;
  const { raw, hashes } = decodeChunk(m.name, m.offset, slab.subarray(m.start, m.start + m.length), m.count, m.crc, m.pageSize, m.format, key, m.pageHashAlgorithm, into);
  const expected = Buffer.from(m.expected.buffer, m.expected.byteOffset, m.expected.byteLength);
  if (!hashes.equals(expected)) {
    let k = 0;
    while (hashes.compare(expected, k * PAGE_HASH_BYTES, (k + 1) * PAGE_HASH_BYTES, k * PAGE_HASH_BYTES, (k + 1) * PAGE_HASH_BYTES) === 0) k++;
    throw pieceCorrupt(m.name, m.offset, `page ${raw.readUInt32BE(k * 4)} does not match its recorded hash`);
  }
  // Runs of consecutive page numbers are consecutive in the file: a write each (writeRuns). One worker writes
  // at a time: two writing one file contend for its inode lock in the kernel, and the loser spins there.
  const { count, pageSize } = m;
  const lock = new Int32Array(m.writeLock);
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) Atomics.wait(lock, 0, 1);
  try {
    writeRuns(m, raw);
  } finally {
    Atomics.store(lock, 0, 0);
    Atomics.notify(lock, 0, 1);
  }
  return { reply: { id: m.id, ok: true, op: 'restore', firstPgno: raw.readUInt32BE(0), lastPgno: raw.readUInt32BE((count - 1) * 4) }, transfer: [] };
}

/**
 * The most one write call carries. Writing 980 MiB into a new file here took, in some hours, 0.82 s of kernel
 * time in 1 MiB calls against 0.30 s in 256 KiB calls (in others both took 0.3 s; reads show no such step),
 * and a restore then spent a third of its samples copying into the page cache. Restores alternating the two
 * caps: 0.51-0.70 s of system time at 256 KiB, 0.70-0.84 s at 1 MiB.
 */
const MAX_WRITE_BYTES = 256 * 1024;

/** Writes a restored chunk's pages at their places: a run of consecutive page numbers per write, at most MAX_WRITE_BYTES. */
function writeRuns(m: Extract<CodecRequest, { op: 'restore' }>, raw: Buffer): void {
  const { count, pageSize } = m;
  const most = Math.max(1, Math.floor(MAX_WRITE_BYTES / pageSize));
  for (let k = 0; k < count; ) {
    const pgno = raw.readUInt32BE(k * 4);
    let n = 1;
    while (k + n < count && n < most && raw.readUInt32BE((k + n) * 4) === pgno + n) n++;
    const at = count * 4 + k * pageSize;
    try {
      for (let done = 0; done < n * pageSize; ) done += writeSync(m.targetFd, raw, at + done, n * pageSize - done, (pgno - 1) * pageSize + done);
    } catch (e) {
      throw ioError('write the restored database', m.targetPath, e);
    }
    k += n;
  }
}

parentPort!.on('message', (m: CodecRequest) => {
  try {
    const { reply, transfer } = handle(m);
    parentPort!.postMessage(reply, transfer);
  } catch (e) {
    parentPort!.postMessage(
      isRedoshipError(e)
        ? { id: m.id, ok: false, code: e.code, message: e.message, hint: e.hint }
        : { id: m.id, ok: false, code: 'ASSERT', message: `codec worker: ${(e as Error)?.stack ?? String(e)}`, hint: 'a bug: please report it' },
    );
  }
});
