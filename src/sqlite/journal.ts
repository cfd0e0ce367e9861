/*
 * THE ROLLBACK JOURNAL (pager.c), as the standby's applier writes it: the original image of every page a
 * batch overwrites, so that a crash at any point leaves either the old database or a hot journal that SQLite
 * rolls back to exactly the old image. Integers are big-endian.
 *
 * Journal header, padded with zeros to one sector (the sector size is written in the header; readers use it):
 *    0  8  magic d9 d5 05 f9 20 a1 63 d7
 *    8  4  nRec: number of page records that follow this header
 *   12  4  cksumInit: a random nonce that seeds every record's checksum
 *   16  4  the database size in pages before the transaction (rollback truncates the file to it)
 *   20  4  sector size (a power of two, 32..65536)
 *   24  4  page size
 * Page record:
 *    0  4  pgno
 *    4  N  the original page image (N = page size)
 *  4+N  4  checksum: cksumInit + the bytes of the image at offsets N-200, N-400, ... (> 0), as unsigned, mod 2^32
 *
 * Playback (pager_playback) reads the header, then nRec records; a record whose checksum does not match ends
 * playback there. Then it truncates the file to the original size and deletes the journal. Two facts matter:
 * (1) if the FIRST record's checksum is wrong, SQLite treats the journal as garbage, deletes it and leaves the
 * database as it is (half written): the checksum must be right, which a test proves against SQLite itself;
 * (2) only pages at or below the original size need an original image: pages past it vanish with the
 * truncation. A journal is "hot" when it exists, is not empty, and no connection holds a RESERVED lock.
 */
import { randomBytes } from 'node:crypto';

export const JOURNAL_MAGIC = Buffer.from([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
export const JOURNAL_SECTOR_SIZE = 512;

/** pager_cksum: the nonce plus every 200th byte of the page counted from the end, mod 2^32. */
export function journalChecksum(nonce: number, page: Uint8Array): number {
  let c = nonce >>> 0;
  for (let i = page.length - 200; i > 0; i -= 200) c = (c + page[i]!) >>> 0;
  return c;
}

/**
 * The whole journal for one batch: the original images (pgno, image) of the pages it overwrites at or below
 * originalSizePages. Returns the bytes to write to `<db>-journal`.
 */
export function buildJournal(
  pageSize: number,
  originalSizePages: number,
  originals: ReadonlyArray<readonly [number, Uint8Array]>,
  nonce: number = randomBytes(4).readUInt32BE(0),
): Buffer {
  const recordBytes = journalRecordBytes(pageSize);
  const out = Buffer.alloc(JOURNAL_SECTOR_SIZE + originals.length * recordBytes);
  journalHeader(pageSize, originalSizePages, originals.length, nonce).copy(out, 0);
  let off = JOURNAL_SECTOR_SIZE;
  for (const [pgno, image] of originals) {
    putJournalRecord(out, off, pgno, image, pageSize, nonce);
    off += recordBytes;
  }
  return out;
}

/** Bytes of one page record: pgno, image, checksum. */
export function journalRecordBytes(pageSize: number): number {
  return 4 + pageSize + 4;
}

/** The journal's first sector: the header for nRec page records (a journal written in pieces starts with it). */
export function journalHeader(pageSize: number, originalSizePages: number, nRec: number, nonce: number): Buffer {
  const out = Buffer.alloc(JOURNAL_SECTOR_SIZE);
  JOURNAL_MAGIC.copy(out, 0);
  out.writeUInt32BE(nRec, 8);
  out.writeUInt32BE(nonce >>> 0, 12);
  out.writeUInt32BE(originalSizePages, 16);
  out.writeUInt32BE(JOURNAL_SECTOR_SIZE, 20);
  out.writeUInt32BE(pageSize, 24);
  return out;
}

/** Writes the page record (pgno, image, checksum) at out[off, off + journalRecordBytes). */
export function putJournalRecord(out: Buffer, off: number, pgno: number, image: Uint8Array, pageSize: number, nonce: number): void {
  if (image.length !== pageSize) throw new Error(`assert: journal page ${pgno} is ${image.length} bytes`);
  out.writeUInt32BE(pgno, off);
  out.set(image, off + 4);
  out.writeUInt32BE(journalChecksum(nonce, image), off + 4 + pageSize);
}
