/**
 * Configuration files for daemons: a JSON object whose keys are a command's long flags, in camelCase or as
 * written on the command line ("checkpointFrames" or "checkpoint-frames"), and whose values are what the flag
 * takes. Flags given on the command line win over the file. Unknown keys are errors, not silently ignored.
 *
 *   { "db": "/srv/app.db", "archive": "/srv/arch", "segment-size": "64MB", "checkpointFrames": 1000 }
 */
import { readFileSync } from 'node:fs';
import { RedoshipError } from '../error/index.js';

export type ConfigValue = string | boolean;

const camel = (k: string) => k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** Reads path and returns the values keyed by camelCase flag name. allowed: camelCase names the command takes. */
export function loadConfig(path: string, allowed: readonly string[]): Record<string, ConfigValue> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is not valid JSON (${(e as Error).message})`;
    throw new RedoshipError('CONFIG_INVALID', `the config file ${path} ${why}`, 'give --config a JSON file such as {"db": "app.db", "archive": "./arch"}', { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new RedoshipError('CONFIG_INVALID', `the config file ${path} is not a JSON object`, 'write {"flag": value, ...}');
  const out: Record<string, ConfigValue> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const key = camel(k);
    if (!allowed.includes(key))
      throw new RedoshipError('CONFIG_INVALID', `the config file ${path} has an unknown key "${k}"`, `known keys: ${allowed.join(', ')}`);
    if (typeof v === 'number') out[key] = String(v);
    else if (typeof v === 'string' || typeof v === 'boolean') out[key] = v;
    else throw new RedoshipError('CONFIG_INVALID', `the config file ${path}: "${k}" must be a string, number or boolean`, 'write sizes and durations as strings, e.g. "64MB", "30s"');
  }
  return out;
}
