// A whole-model checkpoint (safetensors) read and checked once, from which many BatchNorm layers
// load: `loadCheckpoint(path)` reads the file once and checks its header once; tensors are copied
// out only when asked for. ResNet-18's 20 BN layers from one 45 MB file: one read, not 20.
import * as fs from 'fs';
import type { BatchNorm } from './batchnorm';
import { idleLayer } from './batchnorm';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { ioError, parseSafetensorsHeader, Tensor, TensorEntry, tensorAt } from './safetensors';
import { LoadStateDictOptions, prepareStateDictLoad, widened } from './state-dict';
import { readOptions } from './validate';

/** A layer's own entries under a prefix are the keys prefix + name with no further '.' in name. */
function ownName(key: string, prefix: string): string | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  return rest.length > 0 && !rest.includes('.') ? rest : null;
}

export class Checkpoint {
  /** The file's string metadata (`__metadata__`). */
  readonly metadata: Readonly<Record<string, string>>;
  private readonly bytes: Uint8Array;
  private readonly entries: Map<string, TensorEntry>;

  /** Checks the header of safetensors bytes (kept, not copied). Use loadCheckpoint for a file. */
  constructor(bytes: Uint8Array) {
    const header = parseSafetensorsHeader(bytes);
    this.bytes = bytes;
    this.entries = new Map(header.entries.map((e) => [e.name, e]));
    this.metadata = Object.freeze({ ...header.metadata });
  }

  /** Tensor names, in the file's order. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** A copy of one tensor; BF16 / F16 come as their raw 16-bit values (a Uint16Array), dtype says which. */
  tensor(name: string): Tensor {
    if (typeof name !== 'string') {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `Checkpoint.tensor: name must be a string, received ${describe(name)}`);
    }
    const entry = this.entries.get(name);
    if (!entry) throw new BatchNormRangeError('ERR_BN_STATE_DICT', `Checkpoint.tensor: no tensor named ${JSON.stringify(name)}`);
    return tensorAt(this.bytes, entry);
  }

  /** The module prefixes that hold BatchNorm state: every p ('' or ending in '.') with both
   * p + 'running_mean' and p + 'running_var', in the file's order ('layer1.0.bn1.', ...). */
  prefixes(): string[] {
    const out: string[] = [];
    for (const key of this.entries.keys()) {
      if (!key.endsWith('running_mean')) continue;
      const p = key.slice(0, key.length - 'running_mean'.length);
      if ((p === '' || p.endsWith('.')) && this.entries.has(p + 'running_var')) out.push(p);
    }
    return out;
  }

  /** The entries of the module at `prefix` (keys prefix + name, name without '.'), as a layer loads
   * them: BF16 / F16 widened to float32 exactly, other dtypes as stored. */
  stateDict(prefix: string): Record<string, Tensor['data']> {
    const fn = 'Checkpoint.stateDict';
    checkPrefix(fn, prefix);
    return this.moduleDict(prefix);
  }

  /** Loads the module at `prefix` into `layer` (any dtype: a float32 layer from BF16 / F16 is exact,
   * from F64 it rounds once). strict (default true) refuses the module's keys a layer lacks. */
  loadInto(layer: BatchNorm, prefix: string, options: LoadStateDictOptions = {}): void {
    const fn = 'Checkpoint.loadInto';
    checkPrefix(fn, prefix);
    const L = idleLayer(fn, 'layer', layer);
    prepareStateDictLoad(`${fn}(${JSON.stringify(prefix)})`, L, this.moduleDict(prefix), options)();
  }

  /** Loads many layers in one call: { 'layer1.0.bn1.': bn1, ... }. Every layer is checked against
   * its entries before any is written: on error none changes. */
  loadAll(layers: Readonly<Record<string, BatchNorm>>, options: LoadStateDictOptions = {}): void {
    const fn = 'Checkpoint.loadAll';
    if (layers === null || typeof layers !== 'object' || Array.isArray(layers)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: layers must be an object { prefix: layer }, received ${describe(layers)}`);
    }
    const o = readOptions(fn, options, ['strict'] as const);
    const writes: Array<() => void> = [];
    for (const [prefix, layer] of Object.entries(layers)) {
      checkPrefix(fn, prefix);
      const L = idleLayer(fn, `layers[${JSON.stringify(prefix)}]`, layer);
      writes.push(prepareStateDictLoad(`${fn}(${JSON.stringify(prefix)})`, L, this.moduleDict(prefix), o));
    }
    for (const w of writes) w();
  }

  private moduleDict(prefix: string): Record<string, Tensor['data']> {
    const dict: Record<string, Tensor['data']> = {};
    for (const [key, entry] of this.entries) {
      const name = ownName(key, prefix);
      if (name !== null) dict[name] = widened(tensorAt(this.bytes, entry));
    }
    return dict;
  }
}

/** Module prefixes are '' (a file of one layer) or end with '.', as PyTorch's state_dict keys do. */
function checkPrefix(fn: string, prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: prefix must be a string ('' or like 'layer1.0.bn1.'), received ${describe(prefix)}`);
  }
  if (prefix !== '' && !prefix.endsWith('.')) {
    throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: prefix must be '' or end with '.' (like 'layer1.0.bn1.'), received ${JSON.stringify(prefix)}`);
  }
}

/** Reads a safetensors checkpoint once and checks its header; layers then load from it. */
export function loadCheckpoint(path: string): Checkpoint {
  const fn = 'loadCheckpoint';
  if (typeof path !== 'string' || path.length === 0) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: path must be a non-empty string, received ${describe(path)}`);
  }
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    throw ioError(fn, 'read', path, e);
  }
  return new Checkpoint(bytes);
}
