// Writes dist/lib/index.mjs: an ES module that re-exports the CommonJS build, so that both
// `import { BatchNorm } from 'node-batchnorm'` and `require('node-batchnorm')` work.
'use strict';
const fs = require('fs');
const path = require('path');

const dist = path.join(__dirname, '..', 'dist', 'lib');
const cjs = require(path.join(dist, 'index.js'));
const names = Object.keys(cjs).filter((k) => k !== 'default' && k !== '__esModule');
const src =
  "import cjs from './index.js';\n" +
  names.map((n) => `export const ${n} = cjs.${n};`).join('\n') +
  '\nexport default cjs;\n';
fs.writeFileSync(path.join(dist, 'index.mjs'), src);
