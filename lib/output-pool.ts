// The output pool (native/addon/output_pool.h): large outputs the library allocates itself come
// from blocks recently freed by this thread's earlier outputs, so a training loop stops faulting
// in fresh pages every step. Per thread (main thread, each worker), bounded in bytes; idle blocks
// are freed once the pool has served nothing for its idle time (30 s). BATCHNORM_OUTPUT_POOL_BYTES
// sets the initial bound.
import { describe, BatchNormRangeError, BatchNormTypeError } from './errors';
import { native } from './load';
import { readOptions } from './validate';

export interface OutputPoolStats {
  /** false when maxBytes is 0, or this runtime forbids external ArrayBuffers (Electron's sandbox) */
  enabled: boolean;
  /** false once creating an external ArrayBuffer was refused: plain allocations from then on */
  externalBuffers: boolean;
  /** bound on the pool's blocks, idle and lent together */
  maxBytes: number;
  /** a pool that serves nothing this long frees its idle blocks; a full pool frees blocks unused this long */
  idleSeconds: number;
  /** outputs smaller than this are plain allocations */
  minOutputBytes: number;
  /** blocks waiting for reuse */
  idleBytes: number;
  idleBlocks: number;
  /** blocks behind outputs that JavaScript may still hold */
  lentBytes: number;
  lentBlocks: number;
  /** outputs served from an idle block */
  reuses: number;
  /** blocks allocated for the pool */
  allocations: number;
  /** outputs allocated the plain way because the pool was full */
  overBound: number;
  /** outputs allocated the plain way because maxBytes / 8 (at least 64 MiB, or twice what was lent
   * when blocks came back, if more) of new blocks went out since a block last came back:
   * blocks come back only when the event loop turns */
  awaitingReturns: number;
  /** blocks freed (pool unused for a while, room made for another size, a lowered bound, exit) */
  frees: number;
}

/** Sets this thread's output pool: maxBytes bounds its blocks, idle and lent (0 turns it off; idle
 * blocks over the bound are freed now, outputs still held by JavaScript when they are collected);
 * idleSeconds is how long a pool that serves nothing keeps its idle blocks (default 30). A key
 * left out keeps its current value. */
export function setOutputPool(options: { maxBytes?: number; idleSeconds?: number }): void {
  const fn = 'setOutputPool';
  const o = readOptions(fn, options, ['maxBytes', 'idleSeconds'] as const);
  if (options === undefined || (o.maxBytes === undefined && o.idleSeconds === undefined)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: options must be an object with maxBytes and/or idleSeconds, received ${describe(options)}`);
  }
  const now = native().outputPoolStats();
  const maxBytes = o.maxBytes ?? now.maxBytes;
  const idleSeconds = o.idleSeconds ?? now.idleSeconds;
  if (typeof maxBytes !== 'number') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: maxBytes must be a non-negative integer (bytes), received ${describe(maxBytes)}`);
  }
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: maxBytes must be a non-negative integer (bytes), received ${describe(maxBytes)}`);
  }
  if (typeof idleSeconds !== 'number') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: idleSeconds must be a number of seconds in [0, 1e9], received ${describe(idleSeconds)}`);
  }
  if (!(idleSeconds >= 0 && idleSeconds <= 1e9)) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: idleSeconds must be a number of seconds in [0, 1e9], received ${describe(idleSeconds)}`);
  }
  native().setOutputPool(maxBytes, idleSeconds);
}

/** This thread's output pool: its bound, what it holds and what it has done. */
export function outputPoolStats(): OutputPoolStats {
  return native().outputPoolStats();
}

// Idle blocks are freed once the pool has served nothing for its idle time (the addon decides):
// one timer at a time, unref'd so that it never keeps the process alive, armed while the pool
// holds blocks.
const kTrimIntervalMs = 2000;
let trimTimer: ReturnType<typeof setTimeout> | null = null;

function trim(): void {
  trimTimer = null;
  if (native().outputPoolTrim()) armTrim();
}

function armTrim(): void {
  if (trimTimer) return;
  trimTimer = setTimeout(trim, kTrimIntervalMs);
  trimTimer.unref();
}

/** An ArrayBuffer of exactly `bytes` from the pool, or null: allocate it the plain way. */
export function takePooled(bytes: number): ArrayBuffer | null {
  const ab = native().takeOutput(bytes);
  if (ab === undefined) return null;
  armTrim();
  return ab;
}
