// Errors thrown by node-batchnorm: every one has a stable `.code`, and `e instanceof
// BatchNormError` holds for all three classes. The native addon throws these same classes (the
// loader hands them to it), so an error from any layer looks the same.
import { lengthOf, typedArrayKind } from './arrays';

export type BatchNormErrorCode =
  | 'ERR_BN_INVALID_ARG_TYPE' // wrong JS type (not a typed array, not a number, ...)
  | 'ERR_BN_UNKNOWN_OPTION' // an options object has a key the function does not know
  | 'ERR_BN_DTYPE_MISMATCH' // a Float64Array where the layer is float32, a Float32Array where it is bfloat16, ...
  | 'ERR_BN_DTYPE_REQUIRED' // a Uint16Array given to a function without the dtype that says its format
  | 'ERR_BN_BAD_SHAPE' // shape not an array of positive integers, wrong rank, wrong channel count
  | 'ERR_BN_BAD_LENGTH' // an array's length does not match the shape or the channel count
  | 'ERR_BN_OUT_OF_RANGE' // eps, momentum, thread count, SIMD level name outside their range
  | 'ERR_BN_TOO_FEW_VALUES' // training with one value per channel
  | 'ERR_BN_OVERLAP' // an output shares memory with an input where that is not allowed
  | 'ERR_BN_RESIZABLE_BUFFER' // an async call on a view of a resizable ArrayBuffer
  | 'ERR_BN_NO_FORWARD' // backward without a forward to differentiate
  | 'ERR_BN_AMBIGUOUS_BACKWARD' // backwardAsync after several forwards, without naming one
  | 'ERR_BN_INPUT_OVERWRITTEN' // backward after an in-place training forward destroyed x
  | 'ERR_BN_BUSY' // a sync call on a layer with async calls in flight
  | 'ERR_BN_STATE_DICT' // loadStateDict: missing, unexpected or wrongly sized entries
  | 'ERR_BN_SAFETENSORS' // malformed safetensors file or buffer
  | 'ERR_BN_IO' // a file could not be read or written (the cause is the system's error)
  | 'ERR_BN_UNSUPPORTED' // SIMD level not available on this CPU or build
  | 'ERR_BN_NO_RUNNING_STATS' // folding a layer that has no running statistics
  | 'ERR_BN_OUT_OF_MEMORY' // the core could not allocate its scratch memory
  | 'ERR_BN_INTERNAL' // a state the library does not expect (a bug: please report it)
  | 'ERR_BN_LOAD' // the native addon could not be loaded
  | 'ERR_BN_SYNC_TIMEOUT' // a rank of a sync group did not take part in a collective within the group's timeout
  | 'ERR_BN_SYNC_PEER_LOST' // a rank of a Gloo group closed its connections (its process died)
  | 'ERR_BN_SYNC_BROKEN' // a sync group used after one of its collectives failed
  | 'ERR_BN_SYNC_MISMATCH' // the ranks called different collectives (channel count, dtype, op)
  | 'ERR_BN_SYNC_RENDEZVOUS' // the rendezvous of a process group failed (address, port, file)
  | 'ERR_BN_SYNC_RANK_TAKEN' // ThreadGroup.join with a rank another thread has joined
  | 'ERR_BN_GLOO_UNAVAILABLE'; // the Gloo addon (batchnorm_gloo.node) or libgloo could not be loaded

const brand = Symbol('node-batchnorm error');

function stamp(e: Error, name: string, code: BatchNormErrorCode): void {
  e.name = name;
  Object.defineProperty(e, brand, { value: true });
  (e as unknown as { code: BatchNormErrorCode }).code = code;
}

/** Errors of state or format, and the common base of every error this library throws. */
export class BatchNormError extends Error {
  declare readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    stamp(this, 'BatchNormError', code);
  }
  static [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === 'object' && v !== null && (v as { [brand]?: boolean })[brand] === true;
  }
}

/** A wrong type: also a TypeError. */
export class BatchNormTypeError extends TypeError {
  declare readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    stamp(this, 'BatchNormTypeError', code);
  }
}

/** A value out of its range (lengths, shapes, eps, ...): also a RangeError. */
export class BatchNormRangeError extends RangeError {
  declare readonly code: BatchNormErrorCode;
  constructor(code: BatchNormErrorCode, message: string) {
    super(message);
    stamp(this, 'BatchNormRangeError', code);
  }
}

/** A short description of a value for error messages: "a Float64Array of length 12", "the string 'x'". */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  const kind = typedArrayKind(v);
  if (kind !== undefined) {
    return `${/^[AEIO]/.test(kind) ? 'an' : 'a'} ${kind} of length ${lengthOf(v as ArrayBufferView)}`;
  }
  if (ArrayBuffer.isView(v)) return 'a DataView';
  if (Array.isArray(v)) return `an Array of length ${v.length}`;
  switch (typeof v) {
    case 'number': return `the number ${v}`;
    case 'string': return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'boolean': return `the boolean ${v}`;
    case 'bigint': return `the bigint ${v}`;
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
    default: return `an object (${objectName(v as object)})`;
  }
}

function objectName(o: object): string {
  try {
    const name = (o as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' ? name : 'Object';
  } catch {
    return 'Object'; // a Proxy or getter that throws
  }
}
