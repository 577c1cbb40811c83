// Errors thrown by node-batchnorm. Every one has a stable `.code` (also thrown, with the same codes,
// by the native addon as plain TypeError / RangeError if the facade is bypassed).

export type BatchNormErrorCode =
  | 'ERR_BN_INVALID_ARG_TYPE' // wrong JS type (not a typed array, not a number, ...)
  | 'ERR_BN_DTYPE_MISMATCH' // a Float64Array where the layer is float32, or the reverse
  | 'ERR_BN_BAD_SHAPE' // shape not an array of positive integers, wrong rank, wrong channel count
  | 'ERR_BN_BAD_LENGTH' // an array's length does not match the shape or the channel count
  | 'ERR_BN_OUT_OF_RANGE' // eps, momentum, thread count, SIMD level name outside their range
  | 'ERR_BN_TOO_FEW_VALUES' // training with one value per channel
  | 'ERR_BN_OVERLAP' // an output shares memory with an input where that is not allowed
  | 'ERR_BN_NO_FORWARD' // backward without a forward to differentiate
  | 'ERR_BN_INPUT_OVERWRITTEN' // backward after an in-place training forward destroyed x
  | 'ERR_BN_BUSY' // a sync call on a layer with async calls in flight
  | 'ERR_BN_STATE_DICT' // loadStateDict: missing, unexpected or wrongly sized entries
  | 'ERR_BN_SAFETENSORS' // malformed safetensors file or buffer
  | 'ERR_BN_UNSUPPORTED' // SIMD level not available on this CPU or build
  | 'ERR_BN_NO_RUNNING_STATS' // folding a layer that has no running statistics
  | 'ERR_BN_LOAD'; // the native addon could not be loaded

export interface BatchNormErrorLike extends Error {
  code: BatchNormErrorCode;
}

export class BatchNormTypeError extends TypeError implements BatchNormErrorLike {
  readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    this.name = 'BatchNormTypeError';
    this.code = code;
  }
}

export class BatchNormRangeError extends RangeError implements BatchNormErrorLike {
  readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    this.name = 'BatchNormRangeError';
    this.code = code;
  }
}

/** Errors of state or format rather than of one argument's type or range. */
export class BatchNormError extends Error implements BatchNormErrorLike {
  readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    this.name = 'BatchNormError';
    this.code = code;
  }
}

/** A short description of a value for error messages: "a Float64Array of length 12", "the string 'x'". */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) {
    const len = (v as { length?: number }).length;
    return `${/^[AEIOU]/.test(v.constructor.name) ? 'an' : 'a'} ${v.constructor.name}${len !== undefined ? ` of length ${len}` : ''}`;
  }
  if (Array.isArray(v)) return `an Array of length ${v.length}`;
  switch (typeof v) {
    case 'number': return `the number ${v}`;
    case 'string': return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'boolean': return `the boolean ${v}`;
    case 'bigint': return `the bigint ${v}`;
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
    default: return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  }
}
