/**
 * A codec worker thread (codec-pool.ts starts them): encodes chunks for backups (page hashes, compression,
 * encryption, CRC) and decodes them for restores (CRC, decryption, decompression, page hashes), and takes the
 * SHA-256 of whole pieces, so that a backup or restore uses every core while the main thread reads and
 * writes. It only computes: it opens no file and keeps no state but zstd contexts. Messages are
 * codec-pool.ts's CodecRequest / CodecReply.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { isRedoshipError } from '../error/index.js';
import { decodeChunk, encodeChunkBuffer } from './chunk-codec.js';
import type { CodecReply, CodecRequest } from './codec-pool.js';

/** Sends a Buffer without a copy when it owns its whole ArrayBuffer; a copy otherwise (zstd's own memory). */
function sendable(b: Buffer): { bytes: Uint8Array; transfer: ArrayBuffer[] } {
  const ab = b.buffer;
  if (ab instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === ab.byteLength) return { bytes: b, transfer: [ab] };
  const copy = new Uint8Array(b.length);
  copy.set(b);
  return { bytes: copy, transfer: [copy.buffer] };
}

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
  const into = m.rawAt >= 0 ? Buffer.from(m.piece, m.rawAt, m.count * (4 + m.pageSize)) : undefined;
  const { raw, hashes } = decodeChunk(m.name, m.offset, Buffer.from(m.piece, m.start, m.length), m.count, m.crc, m.pageSize, m.algorithm, key, into);
  if (raw.buffer === m.piece) return { reply: { id: m.id, ok: true, op: 'decode', raw: null, rawAt: raw.byteOffset, hashes }, transfer: [hashes.buffer as ArrayBuffer] };
  const s = sendable(raw);
  return { reply: { id: m.id, ok: true, op: 'decode', raw: s.bytes, rawAt: -1, hashes }, transfer: [...s.transfer, hashes.buffer as ArrayBuffer] };
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
