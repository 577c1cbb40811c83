// `npm install` hook: use the prebuilt binary for this platform if it loads, else build from
// source with cmake-js. Downloads nothing.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');
const prebuild = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'node-batchnorm.node');

function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'pipe' });
  return r.status === 0 ? null : (r.stderr.toString().split('\n').find((l) => l.trim()) || `exit ${r.status}`);
}

if (process.env.BATCHNORM_BUILD_FROM_SOURCE !== '1' && fs.existsSync(prebuild)) {
  const err = loads(prebuild);
  if (err === null) {
    console.log(`node-batchnorm: using prebuilt ${path.relative(root, prebuild)}`);
    process.exit(0);
  }
  console.log(`node-batchnorm: prebuilt ${path.relative(root, prebuild)} does not load here (${err}); building from source`);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    'node-batchnorm: building from source failed. It needs cmake >= 3.18, make or ninja, a C++17 compiler with OpenMP ' +
      '(g++ and libgomp on Linux). On Debian/Ubuntu: apt-get install cmake g++ make',
  );
  process.exit(r.status || 1);
}
