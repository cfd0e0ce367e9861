export { RedoServer, checkListenable } from './server.js';
export type { RedoSource, RedoServerOptions, StandbyInfo, TlsServerOptions } from './server.js';
export { RedoClient } from './client.js';
export type { RedoClientOptions, HeldPosition, TlsClientOptions } from './client.js';
export { PROTOCOL_VERSION } from './protocol.js';
export type { Welcome } from './protocol.js';
export { archiveSource } from './source.js';
export { RecentRedo } from './recent.js';
export type { ArchiveSourceOptions } from './source.js';
