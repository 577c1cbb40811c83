// Synchronized batch norm and the groups it synchronizes over.
export { SyncGroup } from './group';
export type { SyncBackend } from './group';
export { ThreadGroup } from './thread-group';
export type { ThreadGroupHandle, ThreadGroupOptions } from './thread-group';
export { SyncBatchNorm, SyncBatchNorm1d, SyncBatchNorm2d, SyncBatchNorm3d } from './sync-batchnorm';
export type { SyncBatchNormOptions } from './sync-batchnorm';
export { mergeMoments, packMoments, sumInRankOrder } from './merge';
export type { GlobalMoments } from './merge';
export { initProcessGroup, GlooGroup } from './gloo';
export type { ProcessGroupOptions } from './gloo';
