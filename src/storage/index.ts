export type { Storage, StorageObject } from './storage.js';
export { LocalStorage } from './local.js';
