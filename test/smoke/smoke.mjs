// Smoke test of the installed package through import (the "import" export condition,
// dist/lib/index.mjs). Run from a folder where node-batchnorm is installed; see smoke-checks.cjs.
import * as bn from 'node-batchnorm';
import { BatchNorm2d, batchNormTraining, runtimeInfo } from 'node-batchnorm';
import { createRequire } from 'node:module';
import checks from './smoke-checks.cjs';

const require = createRequire(import.meta.url);
// import.meta.resolve is synchronous from Node 20.6 (flagged before): check where import went.
const resolved = typeof import.meta.resolve === 'function' ? import.meta.resolve('node-batchnorm') : null;
if (resolved !== null && !resolved.endsWith('/dist/lib/index.mjs')) {
  throw new Error(`import resolved node-batchnorm to ${resolved}, expected its dist/lib/index.mjs`);
}
const cjs = require('node-batchnorm');
for (const [name, value] of Object.entries({ BatchNorm2d, batchNormTraining, runtimeInfo })) {
  if (typeof value !== 'function' || value !== cjs[name]) {
    throw new Error(`named import ${name} is not the CommonJS export of the same name`);
  }
}
checks.run(bn, 'import');
