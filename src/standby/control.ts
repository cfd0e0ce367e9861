/**
 * Operator control of a standby's applier, kept as a small JSON file in its archive directory so that it
 * holds whether or not the standby runs, and a running standby sees changes within its next tick:
 *
 *   control.json   { "paused": boolean, "untilLsn": "N" | null, "untilTime": ISO | null }
 *
 * paused: apply nothing (receiving and archiving go on). untilLsn / untilTime: apply up to that point even
 * if the delay has not passed for it (recovering to just before a mistake), then pause.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedoshipError } from '../error/index.js';

export const CONTROL_FILE = 'control.json';

export interface StandbyControl {
  readonly paused: boolean;
  readonly untilLsn: bigint | null;
  readonly untilTimeUs: bigint | null;
}

export const NO_CONTROL: StandbyControl = { paused: false, untilLsn: null, untilTimeUs: null };

export function readControl(archiveDir: string): StandbyControl {
  const p = join(archiveDir, CONTROL_FILE);
  if (!existsSync(p)) return NO_CONTROL;
  try {
    const o = JSON.parse(readFileSync(p, 'utf8')) as { paused?: boolean; untilLsn?: string | null; untilTime?: string | null };
    return {
      paused: o.paused === true,
      untilLsn: o.untilLsn ? BigInt(o.untilLsn) : null,
      untilTimeUs: o.untilTime ? BigInt(new Date(o.untilTime).getTime()) * 1000n : null,
    };
  } catch (e) {
    throw new RedoshipError('CONFIG_INVALID', `${p} is not a valid control file`, 'remove it, then use `redoship standby pause|resume|apply`', { cause: e });
  }
}

export function writeControl(archiveDir: string, c: StandbyControl): void {
  const p = join(archiveDir, CONTROL_FILE);
  const body = {
    paused: c.paused,
    untilLsn: c.untilLsn === null ? null : String(c.untilLsn),
    untilTime: c.untilTimeUs === null ? null : new Date(Number(c.untilTimeUs / 1000n)).toISOString(),
  };
  writeFileSync(`${p}.tmp`, JSON.stringify(body, null, 2) + '\n');
  renameSync(`${p}.tmp`, p);
}
