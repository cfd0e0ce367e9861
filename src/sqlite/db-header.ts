/*
 * THE DATABASE HEADER: the first 100 bytes of page 1 (https://sqlite.org/fileformat2.html#the_database_header).
 * Integers are big-endian. The fields redoship reads or writes:
 *
 *    0  16  "SQLite format 3\0"
 *   16   2  page size in bytes; 1 means 65536; otherwise a power of two in 512..32768
 *   18   1  file format write version: 1 legacy (rollback journal), 2 WAL
 *   19   1  file format read version: 1 legacy, 2 WAL
 *   20   1  bytes of reserved space at the end of each page
 *   24   4  file change counter
 *   28   4  database size in pages (valid only when 92..95 equals 24..27)
 *   32   4  first freelist trunk page
 *   36   4  number of freelist pages
 *   40   4  schema cookie
 *   92   4  version-valid-for: the change counter value when 28..31 was last set
 *   96   4  SQLITE_VERSION_NUMBER of the library that last wrote the file
 *
 * A standby differs from its primary at the same LSN only in 18..19, 24..27 and 92..95 (DESIGN.md: Apply);
 * compareDatabasePages() masks exactly those.
 */

export const DB_HEADER_BYTES = 100;
const MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export interface DbHeader {
  readonly pageSize: number;
  readonly writeVersion: number;
  readonly readVersion: number;
  readonly reservedBytes: number;
  readonly changeCounter: number;
  /** Size in pages as the header says, or null when 92..95 does not vouch for it (older writers). */
  readonly sizePages: number | null;
  readonly freelistCount: number;
  readonly schemaCookie: number;
  readonly versionValidFor: number;
  readonly sqliteVersion: number;
}

/** Returns the header, or null when the bytes are not a SQLite database header. */
export function parseDbHeader(buf: Uint8Array): DbHeader | null {
  if (buf.length < DB_HEADER_BYTES) return null;
  const b = Buffer.from(buf.buffer, buf.byteOffset, DB_HEADER_BYTES);
  if (!b.subarray(0, 16).equals(MAGIC)) return null;
  const raw = b.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (!isValidPageSize(pageSize)) return null;
  const changeCounter = b.readUInt32BE(24);
  const versionValidFor = b.readUInt32BE(92);
  const size = b.readUInt32BE(28);
  return {
    pageSize,
    writeVersion: b[18]!,
    readVersion: b[19]!,
    reservedBytes: b[20]!,
    changeCounter,
    sizePages: versionValidFor === changeCounter && size > 0 ? size : null,
    freelistCount: b.readUInt32BE(36),
    schemaCookie: b.readUInt32BE(40),
    versionValidFor,
    sqliteVersion: b.readUInt32BE(96),
  };
}

export function isValidPageSize(n: number): boolean {
  return n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

/** Byte ranges of page 1 that legitimately differ between a standby and its primary at the same LSN. */
export const STANDBY_HEADER_RANGES: ReadonlyArray<readonly [start: number, end: number]> = [
  [18, 20],
  [24, 28],
  [92, 96],
];

/**
 * Copy of page 1 with the header fields that depend on the journal mode or on the writer (not on content)
 * set to fixed values, so two files can be compared page for page.
 */
export function maskPage1(page: Uint8Array): Buffer {
  const copy = Buffer.from(page);
  for (const [s, e] of STANDBY_HEADER_RANGES) copy.fill(0, s, e);
  return copy;
}
