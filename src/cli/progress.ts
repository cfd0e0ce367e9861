/**
 * The progress line of long commands (backup, restore, validate --restore-test, backup merge): on a terminal,
 * one line on stderr rewritten a few times a second, e.g.
 *
 *   backup: 131,072 of 262,144 pages (50%), 512.0 MiB, 402 MiB/s, ETA 1 s
 *
 * It stays silent when stderr is not a terminal (scripts, logs, pipes) and with --json or --quiet, so that
 * nothing but the result ever reaches a script. done() ends the line (only when one was drawn).
 */
import { formatBytes } from './units.js';

export interface ProgressCounts {
  /** Units done so far (pages, or records for redo), of total when known. */
  readonly done: number;
  readonly total?: number;
  /** Bytes done so far, for the rate; pages * page size where no better figure exists. */
  readonly bytes: number;
  /** What done counts, when not the line's own unit (a restore counts pages, then redo records). */
  readonly unit?: string;
}

export interface Progress {
  /** What is being worked on changed (e.g. the next backup set of a restore): shown before the counts. */
  step(label: string): void;
  update(c: ProgressCounts): void;
  /** Clears the line: the command's own output follows. */
  done(): void;
}

/** Redraws at most this often: "a few times a second" without flooding a slow terminal. */
const REDRAW_MS = 250;

const SILENT: Progress = { step() {}, update() {}, done() {} };

/**
 * A progress line for `verb` counted in `unit`, or a silent one when `quiet` (--json, --quiet) or stderr is not
 * a terminal. `stream` is for tests; it must be a TTY for anything to be drawn.
 */
export function progressLine(verb: string, unit: string, o: { quiet: boolean; stream?: NodeJS.WriteStream }): Progress {
  const out = o.stream ?? process.stderr;
  if (o.quiet || !out.isTTY) return SILENT;
  const started = Date.now();
  let label = verb;
  let last = 0;
  let drawn = false;
  let latest: ProgressCounts | null = null;
  const draw = () => {
    if (!latest) return;
    const { done, total, bytes } = latest;
    const unitNow = latest.unit ?? unit;
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? bytes / secs : 0;
    const parts = [`${done.toLocaleString('en-US')}${total ? ` of ${total.toLocaleString('en-US')}` : ''} ${unitNow}${total ? ` (${Math.floor((100 * done) / total)}%)` : ''}`];
    parts.push(formatBytes(bytes));
    if (secs >= 0.5) parts.push(`${formatBytes(Math.round(rate))}/s`);
    if (total && done > 0 && done < total && secs >= 1) parts.push(`ETA ${formatEta((secs * (total - done)) / done)}`);
    const columns = out.columns || 100;
    // \r back to the start, \x1b[K clears what a longer previous line left.
    out.write(`\r${`${label}: ${parts.join(', ')}`.slice(0, columns - 1)}\x1b[K`);
    drawn = true;
  };
  return {
    step(l: string) {
      label = `${verb} ${l}`;
    },
    update(c: ProgressCounts) {
      latest = c;
      const now = Date.now();
      if (now - last < REDRAW_MS) return;
      last = now;
      draw();
    },
    done() {
      if (drawn) out.write('\r\x1b[K');
      drawn = false;
    },
  };
}

function formatEta(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.ceil((s % 3600) / 60)} min`;
}
