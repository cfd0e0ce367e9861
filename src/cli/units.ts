/** Parsing of the units users type (sizes, durations, times, LSNs) and formatting for people. */
import { RedoshipError } from '../error/index.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function usage(msg: string, hint: string): RedoshipError {
  return new RedoshipError('USAGE', msg, hint);
}

/** '64MB', '256MiB', '1g', '4096' -> bytes (binary multiples). */
export function parseSize(s: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(s);
  const mult = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || mult === undefined || Number(m[1]) <= 0)
    throw usage(`${flag} ${s}: not a size`, `write a size like 64MB, 512KiB or 1GB`);
  return Math.round(Number(m[1]) * mult);
}

/** '30s', '5m', '1h', '7d', '250ms', '0' -> milliseconds. */
export function parseDuration(s: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(s);
  if (!m) throw usage(`${flag} ${s}: not a duration`, 'write a duration like 30s, 5m, 1h or 7d');
  if (m[2] === undefined && Number(m[1]) !== 0) throw usage(`${flag} ${s}: give a unit`, 'write a duration like 30s, 5m, 1h or 7d');
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

export function parseLsn(s: string, flag: string): bigint {
  if (!/^\d+$/.test(s.trim()) || BigInt(s.trim()) < 1n) throw usage(`${flag} ${s}: not an LSN`, 'an LSN is a whole number >= 1; `redoship archive list` shows the ranges');
  return BigInt(s.trim());
}

export function parseTime(s: string, flag: string): Date {
  const bad = () => usage(`${flag} ${s}: not a time`, 'write an ISO 8601 time like 2026-11-22T10:15:00Z (or with a +01:00 offset)');
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(s.trim());
  const d = new Date(s);
  if (!m || Number.isNaN(d.getTime())) throw bad();
  // Date() rolls 2026-02-30 over to March 2: refuse fields out of range instead.
  const [y, mo, da, h, mi, se] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0));
  const days = new Date(Date.UTC(y!, mo!, 0)).getUTCDate();
  if (mo! < 1 || mo! > 12 || da! < 1 || da! > days || h! > 23 || mi! > 59 || se! > 60) throw bad();
  return d;
}

export function parseCount(s: string, flag: string): number {
  if (!/^\d+$/.test(s.trim())) throw usage(`${flag} ${s}: not a whole number`, `give ${flag} a whole number`);
  return Number(s.trim());
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatTimeUs(us: bigint | null): string {
  if (us === null) return '-';
  return new Date(Number(us / 1000n)).toISOString();
}

export function formatAgo(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** JSON with bigints as decimal strings. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x), 2);
}
