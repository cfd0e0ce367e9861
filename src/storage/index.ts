export type { Storage, StorageObject } from './storage.js';
export { LocalStorage } from './local.js';
export { S3Storage, isS3Location, parseS3Location } from './s3.js';
export { openStorage, createStorage, isRemoteLocation, resolveLocation } from './open.js';
export { Writeback } from './writeback.js';
