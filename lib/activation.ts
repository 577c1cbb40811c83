// The fused activation's user arguments (issue 13): y = relu(BN(x)) or relu(BN(x) + residual), in
// one pass, and its backward (dy masked where y <= 0, dL/dresidual written beside dx). Shared by the
// layer and the functional API; the one place that words these messages.
import { DType, TensorArray } from './arrays';
import { BatchNormRangeError, describe } from './errors';
import { checkTensor } from './validate';

export type Activation = 'relu' | null;

/** The activation option: 'relu', or none (undefined / null). */
export function checkActivation(fn: string, v: unknown): Activation {
  if (v === undefined || v === null) return null;
  if (v !== 'relu') {
    throw new BatchNormRangeError('ERR_BN_ACTIVATION', `${fn}: activation must be 'relu' or null, received ${describe(v)}`);
  }
  return v;
}

/** A residual (added before the ReLU): x's dtype and length, and only with activation 'relu'. */
export function checkResidual(fn: string, v: unknown, activation: Activation, dtype: DType, total: number): TensorArray | null {
  if (v === undefined || v === null) return null;
  if (activation !== 'relu') {
    throw new BatchNormRangeError(
      'ERR_BN_ACTIVATION',
      `${fn}: residual is added before the fused ReLU, so it needs activation 'relu' (this call has none), received ${describe(v)}`,
    );
  }
  return checkTensor(fn, 'residual', v, dtype, total);
}

/** Backward's residualGrad: required after a forward with a residual (dL/dresidual is written
 * there, never dropped), refused after one without. */
export function checkResidualGrad(fn: string, v: unknown, hadResidual: boolean, dtype: DType, total: number): TensorArray | null {
  const given = v !== undefined && v !== null;
  if (hadResidual && !given) {
    throw new BatchNormRangeError(
      'ERR_BN_ACTIVATION',
      `${fn}: the forward added a residual, so backward needs residualGrad (a new ${dtype} array of ${total} elements) to write dL/dresidual into`,
    );
  }
  if (!hadResidual && given) {
    throw new BatchNormRangeError('ERR_BN_ACTIVATION', `${fn}: residualGrad is for a forward with a residual, and this one had none; received ${describe(v)}`);
  }
  return given ? checkTensor(fn, 'residualGrad', v, dtype, total) : null;
}

// Backward through the fused ReLU masks dy with the forward's y, which the caller owns: 17 values
// spread over it are compared before backward, a cheap check that catches a reused output buffer
// (not every change: a full comparison would cost a copy of y).
const SPOT_VALUES = 17;
export function spotSample(y: TensorArray): number[] {
  const n = y.length;
  if (n === 0) return [];
  const k = Math.min(SPOT_VALUES, n);
  return Array.from({ length: k }, (_, i) => y[Math.floor((i * (n - 1)) / Math.max(1, k - 1))]);
}
export function sameValues(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}
