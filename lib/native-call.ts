// From validated arguments to the addon's named calls (lib/binding.ts), and their execution.
// Nothing here validates user input: callers (lib/functional.ts, lib/batchnorm.ts) have.
import { Buffer, constants as bufferConstants } from 'buffer';
import { arrayType, DType, FloatArray, FloatDType, TensorArray, tensorArrayType } from './arrays';
import type { BackwardCall, ForwardInferenceCall, ForwardTrainingCall, NativeBinding } from './binding';
import { BatchNormRangeError } from './errors';
import { native } from './load';
import { takePooled } from './output-pool';

export type OpCall =
  | { op: 'forwardTraining'; args: ForwardTrainingCall }
  | { op: 'forwardInference'; args: ForwardInferenceCall }
  | { op: 'backward'; args: BackwardCall };

// From 4 MiB a new output holds at least one whole 2 MiB page: worth advising huge pages.
const kHugePageAdviceBytes = 4 << 20;
// BATCHNORM_HUGEPAGES=0 turns the advice off (THP defrag may compact memory on an advised fault).
const hugePageAdvice = process.env.BATCHNORM_HUGEPAGES !== '0';

/** A new output that the kernels fill completely: not zero-filled (the fill would cost as much as
 * the op's own write), with its own ArrayBuffer (aligned): from the output pool when it can
 * (lib/output-pool.ts), huge pages advised when large. */
export function freshOutput(dtype: DType, total: number): TensorArray {
  const T = tensorArrayType(dtype);
  const bytes = total * T.BYTES_PER_ELEMENT;
  let a: TensorArray;
  try {
    const pooled = bytes <= bufferConstants.MAX_LENGTH ? takePooled(bytes) : null;
    a = pooled ? new T(pooled, 0, total)
      : bytes > bufferConstants.MAX_LENGTH ? new T(total) : new T(Buffer.allocUnsafeSlow(bytes).buffer, 0, total);
  } catch (e) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_MEMORY', `node-batchnorm: could not allocate an output of ${bytes} bytes (${(e as Error).message}); pass an output array`);
  }
  if (hugePageAdvice && bytes >= kHugePageAdviceBytes) native().adviseHugePages(a);
  return a;
}

/** A small zero-filled array of a call (saved statistics, parameter snapshots and gradients): made
 * by the addon rather than by V8, which scavenges before each buffer it allocates while large
 * fresh outputs are young (native/addon/small_arrays.h); the plain way when the addon cannot. */
export function smallArray(dtype: FloatDType, n: number): FloatArray {
  const T = arrayType(dtype);
  const ab = n > 0 ? native().takeSmall(n * T.BYTES_PER_ELEMENT) : undefined;
  return ab ? new T(ab, 0, n) : new T(n);
}

/** A copy of `a` (in `dtype`, by default a's own) in an array smallArray makes. */
export function smallCopy(a: FloatArray, dtype: FloatDType = a instanceof Float64Array ? 'float64' : 'float32'): FloatArray {
  const c = smallArray(dtype, a.length);
  c.set(a);
  return c;
}

export function runSync(call: OpCall): void {
  const b: NativeBinding = native();
  switch (call.op) {
    case 'forwardTraining': return b.forwardTraining(call.args);
    case 'forwardInference': return b.forwardInference(call.args);
    case 'backward': return b.backward(call.args);
  }
}

/** The addon marks the call's ArrayBuffers untransferable and refuses resizable ones. */
export function runAsync(call: OpCall): Promise<void> {
  const b: NativeBinding = native();
  switch (call.op) {
    case 'forwardTraining': return b.forwardTrainingAsync(call.args);
    case 'forwardInference': return b.forwardInferenceAsync(call.args);
    case 'backward': return b.backwardAsync(call.args);
  }
}
