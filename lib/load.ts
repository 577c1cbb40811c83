// Finds and loads the native addon. Order (documented in the README):
//   1. BATCHNORM_BINDING=/path/to/batchnorm.node, if set (nothing else is tried);
//   2. the prebuilt binary for this platform: prebuilds/<platform>-<arch>/node-batchnorm.node;
//   3. a local build from source: build/Release/batchnorm.node (made by `npm install` / cmake-js).
// Unless BATCHNORM_BINDING is set, BATCHNORM_PREFER=build swaps 2 and 3. If nothing loads, one
// error lists every path tried and why it failed. If a binary exists but does not load and a later
// one does, the failure is not hidden: a process warning (code BN_BINDING_FALLBACK) names it and
// bindingInfo().skipped lists it.
import * as fs from 'fs';
import * as path from 'path';
import type { NativeBinding } from './binding';
import { BatchNormError, BatchNormRangeError, BatchNormTypeError } from './errors';

const packageRoot = path.resolve(__dirname, '..', '..');

/** Environment variables as the loader reads them (process.env fits; no dependence on @types/node). */
export type EnvVars = Readonly<Record<string, string | undefined>>;

export interface BindingCandidate {
  kind: 'env' | 'prebuild' | 'build';
  file: string;
}

export function bindingCandidates(env: EnvVars = process.env): BindingCandidate[] {
  if (env.BATCHNORM_BINDING) return [{ kind: 'env', file: path.resolve(env.BATCHNORM_BINDING) }];
  const prebuild: BindingCandidate = {
    kind: 'prebuild',
    file: path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'node-batchnorm.node'),
  };
  const build: BindingCandidate = { kind: 'build', file: path.join(packageRoot, 'build', 'Release', 'batchnorm.node') };
  return env.BATCHNORM_PREFER === 'build' ? [build, prebuild] : [prebuild, build];
}

export interface LoadedBinding {
  binding: NativeBinding;
  file: string;
  kind: BindingCandidate['kind'];
  /** Binaries tried before this one that exist but failed to load ("kind: file: reason"). */
  skipped: string[];
}

export function loadBinding(env: EnvVars = process.env): LoadedBinding {
  const tried: string[] = [];
  const skipped: string[] = [];
  for (const c of bindingCandidates(env)) {
    if (!fs.existsSync(c.file)) {
      tried.push(`  ${c.kind}: ${c.file}: not found`);
      continue;
    }
    let binding: NativeBinding;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = require(c.file) as NativeBinding;
    } catch (e) {
      const reason = `${c.kind}: ${c.file}: ${(e as Error).message.split('\n')[0]}`;
      tried.push(`  ${reason}`);
      skipped.push(reason);
      continue;
    }
    // From here on the addon throws the facade's own error classes.
    binding.setErrorClasses({ TypeError: BatchNormTypeError, RangeError: BatchNormRangeError, Error: BatchNormError });
    if (skipped.length > 0) {
      process.emitWarning(
        `node-batchnorm: using the ${c.kind} binary ${c.file} because ${skipped.join('; ')}` +
          (c.kind === 'build' ? ' (set BATCHNORM_PREFER=build to load the local build first)' : ''),
        { code: 'BN_BINDING_FALLBACK' },
      );
    }
    return { binding, file: c.file, kind: c.kind, skipped };
  }
  throw new BatchNormError(
    'ERR_BN_LOAD',
    `node-batchnorm: could not load the native addon for ${process.platform}-${process.arch} (Node ${process.version}). Tried:\n` +
      tried.join('\n') +
      '\nRun `npm rebuild node-batchnorm` to build it from source (needs cmake, make, a C++17 compiler and OpenMP), ' +
      'or set BATCHNORM_BINDING to the path of a batchnorm.node.',
  );
}

let loaded: LoadedBinding | undefined;

/** The addon, loaded on first use. */
export function native(): NativeBinding {
  if (!loaded) loaded = loadBinding();
  return loaded.binding;
}

/** Where the addon was loaded from, and the binaries tried before it that failed to load. */
export function bindingInfo(): { file: string; kind: string; skipped: string[] } {
  if (!loaded) loaded = loadBinding();
  return { file: loaded.file, kind: loaded.kind, skipped: [...loaded.skipped] };
}
