/** +1 per committed transaction, never reused within an incarnation. LSN 1 is the archive's first base. */
export type Lsn = bigint & { readonly __brand: 'Lsn' };
export const lsn = (n: bigint | number): Lsn => BigInt(n) as Lsn;

/** 1-based; page 1 holds the database header. */
export type Pgno = number;

export interface Position {
  readonly incarnation: number;
  readonly lsn: Lsn;
}

/**
 * What a record is:
 * - 'base':   every page of the database at this LSN (the whole state; restore can start here)
 * - 'txn':    one transaction captured from the WAL: the final image of every page it wrote
 * - 'resync': after a break in continuity (DESIGN.md Capture 5), exactly the pages that differ from the
 *             state at lsn - 1; transactions between were not captured one by one
 */
export type RecordKind = 'base' | 'txn' | 'resync';

/**
 * Where a transaction's commit frame sat in the live WAL: enough to prove, after a restart, that the WAL
 * still holds the same history (same salts, and the same cumulative checksum at that frame).
 */
export interface WalPosition {
  readonly salt1: number;
  readonly salt2: number;
  readonly commitFrame: number;
  readonly s0: number;
  readonly s1: number;
}

export interface RedoRecord {
  readonly kind: RecordKind;
  readonly lsn: Lsn;
  /** When the primary captured the commit, microseconds since the Unix epoch, primary clock. */
  readonly commitTimeUs: bigint;
  /** Database size in pages after this record. */
  readonly sizePages: number;
  /** Page images, ascending pgno, each pageSize bytes. */
  readonly pages: ReadonlyArray<readonly [Pgno, Uint8Array]>;
  /** For 'txn' records, and for bases/resyncs taken from a live WAL: where the WAL stood. */
  readonly wal: WalPosition | null;
  /** Human-readable reason for a 'resync' record or a base. */
  readonly note?: string;
  /**
   * True when this record does not follow from the previous LSN by one captured transaction but
   * re-establishes the database's state after a break in continuity (a 'resync', or a base taken for one).
   */
  readonly continuityBreak?: boolean;
}

export interface ArchiveIdentity {
  readonly format: 1;
  /** 32 hex digits, made at the archive's creation; every segment carries it. */
  readonly databaseId: string;
  readonly pageSize: number;
  readonly createdAt: string;
  /** The database path the archive was created for (informational). */
  readonly databasePath: string;
}

export interface SegmentInfo {
  readonly path: string;
  readonly name: string;
  readonly incarnation: number;
  readonly firstLsn: Lsn;
  /** Last complete LSN in the segment; firstLsn - 1 when it holds none yet. */
  readonly lastLsn: Lsn;
  readonly sealed: boolean;
  readonly bytes: number;
}
