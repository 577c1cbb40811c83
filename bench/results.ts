// One measured case, and helpers to find the baselines a case is compared with.
import type { Timing } from './timing';

export type Impl = 'node-batchnorm' | 'core' | 'copy' | 'js' | 'onnxruntime-node' | 'tfjs-wasm';
export type Output = 'provided' | 'fresh' | 'inplace' | '-';

export interface Result {
  shape: string;
  impl: Impl;
  /** fwd-train | fwd-infer | backward | copy8-plain | copy8-stream | copy12-plain | copy12-stream | js-set | js-alloc-set | tiny-... */
  op: string;
  output: Output;
  threads: number;
  /** bytes of the floor (8 per element for the forwards and copy8, 12 for backward and copy12) */
  bytes: number;
  timing: Timing;
  note?: string;
}

export function gbs(r: Result, stat: 'median' | 'min' = 'median'): number {
  return r.bytes / r.timing[stat] / 1e9;
}

/** 8 for forwards, 12 for backward. */
export function family(op: string): 8 | 12 {
  return op === 'backward' || op.startsWith('copy12') ? 12 : 8;
}

/** GB/s of the faster copy (plain or streaming) of the op's byte count, same shape and threads. */
export function bestCopy(all: Result[], shape: string, threads: number, fam: 8 | 12, impl: Impl = 'copy', stat: 'median' | 'min' = 'median'): number | undefined {
  let best: number | undefined;
  for (const r of all) {
    if (r.impl === impl && r.shape === shape && r.threads === threads && r.op.startsWith(`copy${fam}-`)) {
      best = Math.max(best ?? 0, gbs(r, stat));
    }
  }
  return best;
}

export function find(all: Result[], q: Partial<Pick<Result, 'shape' | 'impl' | 'op' | 'output' | 'threads'>>): Result | undefined {
  return all.find((r) => (Object.keys(q) as Array<keyof typeof q>).every((k) => r[k] === q[k]));
}

/** Ratio of a case's GB/s to the faster copy at the same shape, threads and byte count (medians, or mins: robust on a busy machine). */
export function ratioToCopy(all: Result[], r: Result, stat: 'median' | 'min' = 'median'): number | undefined {
  const copyImpl: Impl = r.impl === 'core' ? 'core' : 'copy';
  const c = bestCopy(all, r.shape, r.threads, family(r.op), copyImpl, stat);
  return c === undefined ? undefined : gbs(r, stat) / c;
}
