/**
 * A codec worker thread (codec-pool.ts starts them): encodes chunks for backups (page hashes, compression,
 * encryption, CRC) and decodes them for restores (CRC, decryption, decompression, page hashes), so that a
 * backup or restore uses every core while the main thread reads and writes. It only computes: it opens no
 * file and keeps no state but zstd contexts. Messages are codec-pool.ts's EncodeRequest / DecodeRequest.
 */
import { parentPort } from 'node:worker_threads';
import { isRedoshipError } from '../error/index.js';
import { PAGE_HASH_BYTES, pageHash } from '../sqlite/index.js';
import { MAX_CHUNK_PAGES, decodeStored, encodeRaw } from './piece.js';
import type { CodecReply, CodecRequest } from './codec-pool.js';

/** Sends a Buffer without a copy when it owns its whole ArrayBuffer; a copy otherwise (zstd's own memory). */
function sendable(b: Buffer): { bytes: Uint8Array; transfer: ArrayBuffer[] } {
  const ab = b.buffer;
  if (ab instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === ab.byteLength) return { bytes: b, transfer: [ab] };
  const copy = new Uint8Array(b.length);
  copy.set(b);
  return { bytes: copy, transfer: [copy.buffer] };
}

function hashes(raw: Buffer, count: number, pageSize: number): Buffer {
  const out = Buffer.allocUnsafeSlow(count * PAGE_HASH_BYTES);
  for (let i = 0; i < count; i++) pageHash(raw.readUInt32BE(i * 4), raw.subarray(count * 4 + i * pageSize, count * 4 + (i + 1) * pageSize)).copy(out, i * PAGE_HASH_BYTES);
  return out;
}

function handle(m: CodecRequest): { reply: CodecReply; transfer: ArrayBuffer[] } {
  const key = m.key ? Buffer.from(m.key) : undefined;
  if (m.op === 'encode') {
    // The pool fills page numbers into MAX_CHUNK_PAGES slots, then the images; a short chunk is moved together.
    let raw = Buffer.from(m.buf);
    if (m.count < MAX_CHUNK_PAGES) {
      raw.copyWithin(m.count * 4, MAX_CHUNK_PAGES * 4, MAX_CHUNK_PAGES * 4 + m.count * m.pageSize);
      raw = raw.subarray(0, m.count * (4 + m.pageSize));
    }
    const h = hashes(raw, m.count, m.pageSize);
    const { stored, crc } = encodeRaw(raw, { algorithm: m.algorithm, level: m.level }, key);
    const s = sendable(stored);
    return { reply: { id: m.id, ok: true, bytes: s.bytes, crc, hashes: h }, transfer: [...s.transfer, h.buffer as ArrayBuffer] };
  }
  const raw = decodeStored(m.name, { offset: m.offset, stored: Buffer.from(m.stored), count: m.count, crc: m.crc }, m.pageSize, m.algorithm, key);
  const h = hashes(raw, m.count, m.pageSize);
  const s = sendable(raw);
  return { reply: { id: m.id, ok: true, bytes: s.bytes, crc: m.crc, hashes: h }, transfer: [...s.transfer, h.buffer as ArrayBuffer] };
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
