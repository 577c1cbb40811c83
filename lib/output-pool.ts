// The output pool (native/addon/output_pool.h): large outputs the library allocates itself come
// from blocks recently freed by this thread's earlier outputs, so a training loop stops faulting
// in fresh pages every step. Per thread (main thread, each worker), bounded in bytes; idle blocks
// are freed once the pool has served nothing for a few seconds. BATCHNORM_OUTPUT_POOL_BYTES sets
// the initial bound.
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
  /** outputs allocated the plain way because maxBytes / 8 (at least 64 MiB) of new blocks went out
   * since a block last came back: blocks come back only when the event loop turns */
  awaitingReturns: number;
  /** blocks freed (pool unused for a while, room made for another size, a lowered bound, exit) */
  frees: number;
}

/** Bounds this thread's output pool (maxBytes, 0 turns it off): idle blocks over the bound are
 * freed now, outputs still held by JavaScript when they are collected. */
export function setOutputPool(options: { maxBytes: number }): void {
  const o = readOptions('setOutputPool', options, ['maxBytes'] as const);
  const v = o.maxBytes;
  if (typeof v !== 'number') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `setOutputPool: maxBytes must be a non-negative integer (bytes), received ${describe(v)}`);
  }
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `setOutputPool: maxBytes must be a non-negative integer (bytes), received ${describe(v)}`);
  }
  native().setOutputPool(v);
}

/** This thread's output pool: its bound, what it holds and what it has done. */
export function outputPoolStats(): OutputPoolStats {
  return native().outputPoolStats();
}

// Idle blocks are freed once the pool has served nothing for a few seconds (the addon decides):
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
