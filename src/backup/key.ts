/**
 * Encryption keys for backup sets. The key file holds a secret (any bytes; surrounding whitespace ignored).
 * Each set derives its own 256-bit AES key from it with scrypt and a random salt kept in the manifest, with a
 * key check value (HMAC of a fixed label) so that a wrong key is told as such before any piece is read.
 *
 * manifest.encryption = { algorithm: 'aes-256-gcm', kdf: 'scrypt', salt: hex, keyCheck: hex }
 */
import { createHmac, randomBytes, scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RedoshipError } from '../error/index.js';

export interface SetEncryption {
  readonly algorithm: 'aes-256-gcm';
  readonly kdf: 'scrypt';
  readonly salt: string;
  readonly keyCheck: string;
}

export function readKeyFile(path: string): Buffer {
  let s: Buffer;
  try {
    s = readFileSync(path);
  } catch (e) {
    throw new RedoshipError('USAGE', `cannot read the key file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'check --encrypt-key-file', { cause: e });
  }
  const secret = Buffer.from(s.toString('latin1').trim(), 'latin1');
  if (secret.length === 0) throw new RedoshipError('USAGE', `the key file ${path} is empty`, 'create one with: head -c 32 /dev/urandom | base64 > backup.key');
  return secret;
}

function derive(secret: Buffer, salt: Buffer): Buffer {
  return scryptSync(secret, salt, 32, { N: 16384, r: 8, p: 1 });
}

function check(key: Buffer): string {
  return createHmac('sha256', key).update('redoship backup key check').digest('hex').slice(0, 32);
}

/** A new set's key and its manifest entry. */
export function newSetKey(secret: Buffer): { key: Buffer; encryption: SetEncryption } {
  const salt = randomBytes(16);
  const key = derive(secret, salt);
  return { key, encryption: { algorithm: 'aes-256-gcm', kdf: 'scrypt', salt: salt.toString('hex'), keyCheck: check(key) } };
}

/** The key of an existing set; WRONG_KEY when the secret is not the one the set was made with. */
export function setKey(setName: string, e: SetEncryption, secret: Buffer | null, keyFile?: string): Buffer {
  if (!secret)
    throw new RedoshipError('WRONG_KEY', `backup set ${setName} is encrypted`, 'give the key file it was made with: --encrypt-key-file FILE');
  const key = derive(secret, Buffer.from(e.salt, 'hex'));
  if (check(key) !== e.keyCheck)
    throw new RedoshipError('WRONG_KEY', `the key${keyFile ? ` in ${keyFile}` : ''} does not open backup set ${setName}`, 'give the key file the set was made with (--encrypt-key-file)');
  return key;
}
