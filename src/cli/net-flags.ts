/** Flags shared by commands that speak the redo protocol: the secret, TLS files, addresses. */
import { readFileSync } from 'node:fs';
import { RedoshipError } from '../error/index.js';
import { parseHostPort } from '../log/index.js';

export function readSecret(path: string | undefined, needed: string): Buffer {
  if (!path) throw new RedoshipError('USAGE', `${needed} needs --token-file`, 'create one with: head -c 32 /dev/urandom | base64 > secret; give the same file to the primary and its standbys');
  let s: Buffer;
  try {
    s = readFileSync(path);
  } catch (e) {
    throw new RedoshipError('USAGE', `cannot read the token file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'check the --token-file path', { cause: e });
  }
  const trimmed = Buffer.from(s.toString('utf8').trim(), 'utf8');
  if (trimmed.length === 0)
    throw new RedoshipError('USAGE', `the token file ${path} holds 0 bytes: there is no secret in it`, 'create one with: head -c 32 /dev/urandom | base64 > secret');
  if (trimmed.length < 16)
    // Short secrets work (both sides just need the same one), but they can be guessed: say so, loudly.
    process.stderr.write(`redoship: warning: the secret in ${path} is only ${trimmed.length} bytes; anyone who guesses it can read your redo. Use 16 or more random bytes: head -c 32 /dev/urandom | base64 > ${path}\n`);
  return trimmed;
}

export function readTlsFile(path: string | undefined, flag: string): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new RedoshipError('USAGE', `cannot read ${flag} ${path}`, 'check the path of the certificate or key file', { cause: e });
  }
}

export function hostPort(s: string, flag: string): { host: string; port: number } {
  const hp = parseHostPort(s);
  if (!hp) throw new RedoshipError('USAGE', `${flag} ${s}: not HOST:PORT`, `write it like ${flag} 127.0.0.1:7400`);
  return hp;
}
