// `npm install` hook: use the prebuilt binary for this platform if it loads, else build from
// source with cmake-js. Downloads nothing.
//
// In a git checkout (a .git entry beside package.json) a prebuilds/ folder is only used when its
// build-info.json was made from the native sources the checkout has now (the hash that
// `scripts/prebuild.sh --source-hash` prints and build-info.json records: sourceHash() below is its
// one home, which prebuild.sh calls). A stale prebuild would otherwise stand in for
// sources a developer has changed. An installed package (no .git) has the prebuilds it was packed
// with, checked by scripts/pack-smoke.sh, and skips the hash.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');
const target = `${process.platform}-${process.arch}`;
const BUILD_TOOLS = ['cmake-js', 'node-addon-api', 'node-api-headers'];

/**
 * Hash of the sources that go into the binary: native/core, native/addon and CMakeLists.txt, each
 * file as "relative/path\0sha256(content)\n" in sorted path order, hashed with sha256. The only
 * implementation: scripts/prebuild.sh (--source-hash, build-info.json) calls this one.
 */
function sourceHash(dir = root) {
  const files = [];
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk('native/core');
  walk('native/addon');
  files.push('CMakeLists.txt');
  const h = crypto.createHash('sha256');
  for (const f of files.sort()) {
    h.update(f + '\0' + crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex') + '\n');
  }
  return h.digest('hex');
}

/** null if `dir` (prebuilds/<target>) was built from the sources in `srcRoot`, else why not. */
function prebuildStaleness(dir, srcRoot = root) {
  const infoFile = path.join(dir, 'build-info.json');
  let info;
  try {
    info = JSON.parse(fs.readFileSync(infoFile, 'utf8'));
  } catch (e) {
    return `${path.relative(srcRoot, infoFile)} cannot be read (${e.code || e.message}), so it is unknown which sources it was built from`;
  }
  const now = sourceHash(srcRoot);
  if (info.sourceHash !== now) {
    return `it was built from other native sources than this checkout has (build-info.json sourceHash ${String(info.sourceHash).slice(0, 12)}, sources now ${now.slice(0, 12)})`;
  }
  return null;
}

/** null if `file` loads in a fresh Node process, else the first line of the error. */
function loads(file) {
  const code = `try { require(${JSON.stringify(file)}); } catch (e) { process.stderr.write(String(e && e.message).split('\\n')[0]); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', code], { stdio: 'pipe' });
  return r.status === 0 ? null : (r.stderr.toString().split('\n').find((l) => l.trim()) || `exit ${r.status} ${r.signal || ''}`.trim());
}

function resolves(request) {
  try {
    return require.resolve(request, { paths: [__dirname] });
  } catch {
    return null;
  }
}

function buildFromSource(why) {
  const cmakeJs = resolves('cmake-js/bin/cmake-js');
  const missing = BUILD_TOOLS.filter((name) => resolves(`${name}/package.json`) === null);
  if (!cmakeJs || missing.length > 0) {
    console.error(
      `node-batchnorm: ${why}, and building from source needs ${missing.join(', ')} ` +
        `(optional ${missing.length === 1 ? 'dependency' : 'dependencies'} of node-batchnorm), which ` +
        `${missing.length === 1 ? 'is' : 'are'} not installed. Run \`npm install ${BUILD_TOOLS.join(' ')}\`, ` +
        'then `npm rebuild node-batchnorm`.',
    );
    process.exit(1);
  }
  // Asked for explicitly: a clean configure, so that libraries installed since (Gloo) are found.
  const verb = process.env.BATCHNORM_BUILD_FROM_SOURCE === '1' ? 'rebuild' : 'compile';
  const r = spawnSync(process.execPath, [cmakeJs, verb, '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      'node-batchnorm: building from source failed. It needs cmake >= 3.18, make or ninja, a C++17 compiler with OpenMP ' +
        '(g++ and libgomp on Linux). On Debian/Ubuntu: apt-get install cmake g++ make',
    );
    process.exit(r.status || 1);
  }
}

function main() {
  const prebuildDir = path.join(root, 'prebuilds', target);
  const prebuild = path.join(prebuildDir, 'node-batchnorm.node');
  const rel = path.relative(root, prebuild);
  let why = 'no prebuilt binary loads here';
  if (process.env.BATCHNORM_BUILD_FROM_SOURCE === '1') {
    why = 'BATCHNORM_BUILD_FROM_SOURCE=1 asks for a build from source';
    console.log(`node-batchnorm: ${why}`);
  } else if (!fs.existsSync(prebuild)) {
    why = `there is no prebuilt binary for ${target}`;
    console.log(`node-batchnorm: ${why} (${rel}); building from source`);
  } else {
    const stale = fs.existsSync(path.join(root, '.git')) ? prebuildStaleness(prebuildDir) : null;
    if (stale !== null) {
      why = `the prebuilt ${rel} in this checkout is stale`;
      console.log(
        `node-batchnorm: not using the prebuilt ${rel}: ${stale}. Building from source into build/ instead. ` +
          'The loader still tries prebuilds/ before build/: run `npm run prebuild` to remake it, delete prebuilds/, ' +
          'or set BATCHNORM_PREFER=build.',
      );
    } else {
      const err = loads(prebuild);
      if (err === null) {
        console.log(`node-batchnorm: using prebuilt ${rel}`);
        return;
      }
      why = `the prebuilt ${rel} does not load here`;
      console.log(`node-batchnorm: prebuilt ${rel} does not load here (${err}); building from source`);
    }
  }
  buildFromSource(why);
}

module.exports = { sourceHash, prebuildStaleness };
if (require.main === module) main();
