export { DEFAULT_BASE_URL, IrisClient } from './client.js';
export type { ClientOptions, LogStream, StreamOptions } from './client.js';
export * from './errors.js';
export * from './types.js';
