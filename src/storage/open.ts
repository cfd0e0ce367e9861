/**
 * Which Storage a location names: `s3://bucket[/prefix]` is an S3 bucket (s3.ts), anything else a local
 * directory (local.ts). Commands and the backup core take locations as strings and open them here.
 */
import { resolve } from 'node:path';
import { LocalStorage } from './local.js';
import { S3Storage, isS3Location } from './s3.js';
import type { Storage } from './storage.js';

/** True for a location that is not a local path (it must not be resolved against the working directory). */
export function isRemoteLocation(location: string): boolean {
  return isS3Location(location);
}

/** A location made independent of the working directory: local paths absolute, URLs unchanged. */
export function resolveLocation(location: string): string {
  return isRemoteLocation(location) ? location : resolve(location);
}

/** Opens the storage at a location, creating nothing (a missing directory or bucket reads as empty). */
export function openStorage(location: string): Storage {
  return isS3Location(location) ? new S3Storage(location) : new LocalStorage(location);
}

/**
 * Opens the storage at a location to write to it: a local directory is created; an S3 prefix needs no
 * creating, and the bucket must exist already (buckets are never created here).
 */
export function createStorage(location: string): Storage {
  return isS3Location(location) ? new S3Storage(location) : LocalStorage.create(location);
}
