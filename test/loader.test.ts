// The addon loader (lib/load.ts) and the install script (scripts/install.js), on throw-away package
// layouts: a copy of a working binary (build/Release/batchnorm.node, made by `npm install` on a
// fresh clone) placed as prebuilds/<platform>-<arch>/node-batchnorm.node or build/Release/, and
// garbage .node files. Needs no real prebuilds/, so it runs on a fresh clone. The binaries
// `npm run prebuild` makes are checked by test/shipped/prebuilds.check.ts, run on its own after it.
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { bindingCandidates } from '../lib/load';
import {
  cleanEnv, expectClose, GARBAGE, makePackage, platformDir, prebuildSourceHash, probe, PROBE_Y, realBinary,
  removeTempPackages, repo, tempRoot,
} from './helpers/loader-probe';

after(removeTempPackages);

describe('loader: which binary is loaded', () => {
  it('lists prebuild then build, build first with BATCHNORM_PREFER=build, only the given file with BATCHNORM_BINDING', () => {
    const pre = path.join(repo, 'prebuilds', platformDir, 'node-batchnorm.node');
    const bld = path.join(repo, 'build', 'Release', 'batchnorm.node');
    expect(bindingCandidates({})).to.deep.equal([{ kind: 'prebuild', file: pre }, { kind: 'build', file: bld }]);
    expect(bindingCandidates({ BATCHNORM_PREFER: 'build' })).to.deep.equal([{ kind: 'build', file: bld }, { kind: 'prebuild', file: pre }]);
    expect(bindingCandidates({ BATCHNORM_BINDING: 'x/y.node', BATCHNORM_PREFER: 'build' }))
      .to.deep.equal([{ kind: 'env', file: path.resolve('x/y.node') }]);
  });

  it('loads the prebuilt binary when it is the only one, and computes with it', () => {
    const root = makePackage('real', null);
    const r = probe(root);
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('prebuild');
    expect(r.info!.binding.file).to.equal(path.join(root, 'prebuilds', platformDir, 'node-batchnorm.node'));
    expect(r.info!.binding.skipped).to.deep.equal([]);
    expect(r.warnings).to.deep.equal([]);
    expectClose(r.y, PROBE_Y);
  });

  it('loads build/ when there is no prebuild, without a warning', () => {
    const root = makePackage(null, 'real');
    const r = probe(root);
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('build');
    expect(r.info!.binding.file).to.equal(path.join(root, 'build', 'Release', 'batchnorm.node'));
    expect(r.info!.binding.skipped).to.deep.equal([]);
    expect(r.warnings).to.deep.equal([]);
    expectClose(r.y, PROBE_Y);
  });

  it('prefers a working prebuild over build/, which is not even tried (a broken build/ cannot interfere)', () => {
    const r = probe(makePackage('real', 'garbage'));
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('prebuild');
    expect(r.info!.binding.skipped).to.deep.equal([]);
    expect(r.warnings).to.deep.equal([]);
  });

  it('reports a broken prebuild (warning + bindingInfo().skipped) when build/ is loaded instead', () => {
    const root = makePackage('garbage', 'real');
    const r = probe(root);
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('build');
    const pre = path.join(root, 'prebuilds', platformDir, 'node-batchnorm.node');
    expect(r.info!.binding.skipped).to.have.length(1);
    expect(r.info!.binding.skipped[0]).to.contain(`prebuild: ${pre}: `).and.match(/invalid ELF header|file too short/);
    const fallback = r.warnings.filter((w) => w.code === 'BN_BINDING_FALLBACK');
    expect(fallback, JSON.stringify(r.warnings)).to.have.length(1);
    expect(fallback[0].message).to.contain(pre).and.contain('BATCHNORM_PREFER=build');
    expectClose(r.y, PROBE_Y);
  });

  it('with BATCHNORM_PREFER=build, reports a broken build/ and loads the prebuild', () => {
    const root = makePackage('real', 'garbage');
    const r = probe(root, { BATCHNORM_PREFER: 'build' });
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('prebuild');
    expect(r.info!.binding.skipped[0]).to.contain(`build: ${path.join(root, 'build', 'Release', 'batchnorm.node')}: `);
    expect(r.warnings.map((w) => w.code)).to.include('BN_BINDING_FALLBACK');
  });

  it('with BATCHNORM_PREFER=build and a working build/, loads build/ and never tries a broken prebuild', () => {
    const root = makePackage('garbage', 'real');
    const r = probe(root, { BATCHNORM_PREFER: 'build' });
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('build');
    expect(r.info!.binding.skipped).to.deep.equal([]);
    expect(r.warnings).to.deep.equal([]);
  });

  it('BATCHNORM_BINDING loads exactly that file and never falls back', () => {
    const root = makePackage('real', 'real');
    const bad = path.join(root, 'chosen.node');
    fs.writeFileSync(bad, GARBAGE);
    const r = probe(root, { BATCHNORM_BINDING: bad });
    expect(r.ok).to.equal(false);
    expect(r.code).to.equal('ERR_BN_LOAD');
    expect(r.isBatchNormError).to.equal(true);
    expect(r.message).to.contain(`env: ${bad}: `).and.match(/invalid ELF header|file too short/);
    expect(r.message).not.to.contain('prebuilds').and.not.to.contain('build/Release');

    const good = probe(root, { BATCHNORM_BINDING: path.join(root, 'build', 'Release', 'batchnorm.node') });
    expect(good.ok, good.message).to.equal(true);
    expect(good.info!.binding.kind).to.equal('env');
    expectClose(good.y, PROBE_Y);
  });

  it('with no binary at all, throws one ERR_BN_LOAD listing every path tried and what to do', () => {
    const root = makePackage(null, null);
    const r = probe(root);
    expect(r.ok).to.equal(false);
    expect(r.name).to.equal('BatchNormError');
    expect(r.code).to.equal('ERR_BN_LOAD');
    expect(r.isBatchNormError).to.equal(true);
    expect(r.message).to.contain(`${platformDir}`);
    expect(r.message).to.contain(`prebuild: ${path.join(root, 'prebuilds', platformDir, 'node-batchnorm.node')}: not found`);
    expect(r.message).to.contain(`build: ${path.join(root, 'build', 'Release', 'batchnorm.node')}: not found`);
    expect(r.message).to.contain('npm rebuild').and.contain('BATCHNORM_BINDING');
  });

  it('with every binary broken, the error gives each one\'s reason', () => {
    const root = makePackage('garbage', 'garbage');
    const r = probe(root);
    expect(r.code).to.equal('ERR_BN_LOAD');
    const lines = r.message!.split('\n').filter((l) => /^ {2}(prebuild|build): /.test(l));
    expect(lines).to.have.length(2);
    for (const l of lines) expect(l).to.match(/invalid ELF header|file too short/);
  });

  it('uses a layout node-gyp-build finds: prebuilds/<platform>-<arch>/*.node (libgomp.so.1 beside it is ignored)', () => {
    const root = makePackage('real', null);
    fs.writeFileSync(path.join(root, 'prebuilds', platformDir, 'libgomp.so.1'), '');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ngb = require('node-gyp-build') as { path(dir: string): string };
    expect(ngb.path(root)).to.equal(path.join(root, 'prebuilds', platformDir, 'node-batchnorm.node'));
  });
});

// ---- scripts/install.js ----

// eslint-disable-next-line @typescript-eslint/no-require-imports
const install = require(path.join(repo, 'scripts', 'install.js')) as {
  sourceHash(dir?: string): string;
  prebuildStaleness(dir: string, srcRoot?: string): string | null;
};

// A stand-in for cmake-js/bin/cmake-js that records how it was called and exits with FAKE_CMAKE_JS_EXIT.
const FAKE_CMAKE_JS = `
require('fs').writeFileSync(process.env.FAKE_CMAKE_JS_LOG, JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd() }));
process.exit(Number(process.env.FAKE_CMAKE_JS_EXIT || 0));
`;

interface InstallLayout {
  /** a .git folder beside package.json, as in a clone of the repository */
  checkout: boolean;
  prebuild: 'real' | 'garbage' | null;
  /** sourceHash written to build-info.json: 'current' (of the copied sources), 'other', or no build-info.json */
  buildInfo: 'current' | 'other' | null;
  /** node_modules with stand-ins for cmake-js, node-addon-api, node-api-headers */
  buildTools: boolean;
}

/** A package as the install hook sees it: package.json, scripts/install.js, the native sources, etc. */
function makeInstallPackage(o: InstallLayout): string {
  const root = tempRoot('bn-install-');
  fs.copyFileSync(path.join(repo, 'package.json'), path.join(root, 'package.json'));
  fs.mkdirSync(path.join(root, 'scripts'));
  for (const f of ['install.js', 'prebuild.sh']) fs.copyFileSync(path.join(repo, 'scripts', f), path.join(root, 'scripts', f));
  fs.cpSync(path.join(repo, 'native'), path.join(root, 'native'), { recursive: true });
  fs.copyFileSync(path.join(repo, 'CMakeLists.txt'), path.join(root, 'CMakeLists.txt'));
  if (o.checkout) fs.mkdirSync(path.join(root, '.git'));
  if (o.prebuild !== null) {
    const dir = path.join(root, 'prebuilds', platformDir);
    fs.mkdirSync(dir, { recursive: true });
    if (o.prebuild === 'real') fs.copyFileSync(realBinary(), path.join(dir, 'node-batchnorm.node'));
    else fs.writeFileSync(path.join(dir, 'node-batchnorm.node'), GARBAGE);
    if (o.buildInfo !== null) {
      const sourceHash = o.buildInfo === 'current' ? install.sourceHash(root) : '0'.repeat(64);
      fs.writeFileSync(path.join(dir, 'build-info.json'), JSON.stringify({ target: platformDir, sourceHash }));
    }
  }
  if (o.buildTools) {
    for (const name of ['cmake-js', 'node-addon-api', 'node-api-headers']) {
      const dir = path.join(root, 'node_modules', name);
      fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '0.0.0-fake' }));
    }
    fs.writeFileSync(path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), FAKE_CMAKE_JS);
  }
  return root;
}

interface InstallRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** how the (stand-in) cmake-js was called, or null if it was not */
  cmakeJs: { argv: string[]; cwd: string } | null;
}

function runInstall(root: string, env: Record<string, string> = {}): InstallRun {
  const log = path.join(root, 'cmake-js-call.json');
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'install.js')], {
    cwd: root,
    env: cleanEnv({ FAKE_CMAKE_JS_LOG: log, ...env }),
    encoding: 'utf8',
    timeout: 60000,
  });
  const cmakeJs = fs.existsSync(log) ? (JSON.parse(fs.readFileSync(log, 'utf8')) as InstallRun['cmakeJs']) : null;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, cmakeJs };
}

// `compile` builds incrementally; `rebuild` (BATCHNORM_BUILD_FROM_SOURCE=1) configures afresh.
function expectBuiltFromSource(r: InstallRun, root: string, verb: 'compile' | 'rebuild' = 'compile'): void {
  expect(r.status, r.stderr).to.equal(0);
  expect(r.cmakeJs, `cmake-js was not called; stdout: ${r.stdout}`).to.not.equal(null);
  expect(r.cmakeJs!.argv).to.deep.equal([verb, '--CDCMAKE_BUILD_TYPE=Release']);
  expect(fs.realpathSync(r.cmakeJs!.cwd)).to.equal(fs.realpathSync(root));
  expect(r.stdout).not.to.contain('using prebuilt');
}

describe('install script (scripts/install.js)', () => {
  const rel = `prebuilds/${platformDir}/node-batchnorm.node`;

  it('hashes the native sources exactly as `scripts/prebuild.sh --source-hash` does, and any change shows', () => {
    const now = install.sourceHash(repo);
    expect(now).to.match(/^[0-9a-f]{64}$/);
    expect(now).to.equal(prebuildSourceHash(repo));

    const root = makeInstallPackage({ checkout: true, prebuild: null, buildInfo: null, buildTools: true /* prebuild.sh wants cmake-js to exist */ });
    expect(install.sourceHash(root)).to.equal(now);
    const seen = new Set([now]);
    // An edit in core, an edit in the addon, a new file, the CMake file: each gives a new hash, the same in both.
    const edits: [string, (f: string) => void][] = [
      ['native/core/forward_training.cc', (f) => fs.appendFileSync(f, '\n// edited\n')],
      ['native/addon/addon.cc', (f) => fs.appendFileSync(f, '\n')],
      ['native/core/new_file.h', (f) => fs.writeFileSync(f, '#pragma once\n')],
      ['CMakeLists.txt', (f) => fs.appendFileSync(f, '# edited\n')],
    ];
    for (const [file, edit] of edits) {
      edit(path.join(root, file));
      const h = install.sourceHash(root);
      expect(seen.has(h), `editing ${file} did not change the hash`).to.equal(false);
      expect(h, file).to.equal(prebuildSourceHash(root));
      seen.add(h);
    }
  });

  it('hashes the sources quickly (it runs on every install in a checkout)', () => {
    // Not a speed benchmark: a generous bound that catches hashing something huge by mistake.
    const t0 = process.hrtime.bigint();
    install.sourceHash(repo);
    expect(Number(process.hrtime.bigint() - t0) / 1e9).to.be.below(1);
  });

  it('uses a prebuild that loads and was built from the checkout\'s sources, without building', () => {
    const root = makeInstallPackage({ checkout: true, prebuild: 'real', buildInfo: 'current', buildTools: true });
    const r = runInstall(root);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain(`node-batchnorm: using prebuilt ${rel}`);
    expect(r.cmakeJs).to.equal(null);
  });

  it('in a checkout, does not use a stale prebuild: builds from source and says why', () => {
    const root = makeInstallPackage({ checkout: true, prebuild: 'real', buildInfo: 'current', buildTools: true });
    fs.appendFileSync(path.join(root, 'native', 'core', 'forward_training.cc'), '\n// a developer edit\n');
    const r = runInstall(root);
    expectBuiltFromSource(r, root);
    expect(r.stdout).to.contain(`not using the prebuilt ${rel}`).and.contain('built from other native sources');
    expect(r.stdout).to.contain('npm run prebuild').and.contain('BATCHNORM_PREFER=build');
    expect(install.prebuildStaleness(path.join(root, 'prebuilds', platformDir), root)).to.contain('other native sources');
  });

  it('in a checkout, does not use a prebuild without build-info.json', () => {
    const root = makeInstallPackage({ checkout: true, prebuild: 'real', buildInfo: null, buildTools: true });
    const r = runInstall(root);
    expectBuiltFromSource(r, root);
    expect(r.stdout).to.contain(`not using the prebuilt ${rel}`).and.contain('build-info.json cannot be read');
  });

  it('in an installed package (no .git), uses the prebuild it was packed with without hashing', () => {
    const root = makeInstallPackage({ checkout: false, prebuild: 'real', buildInfo: 'other', buildTools: true });
    const r = runInstall(root);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain(`node-batchnorm: using prebuilt ${rel}`);
    expect(r.cmakeJs).to.equal(null);
  });

  it('builds from source when the prebuild does not load, giving the loader error', () => {
    const root = makeInstallPackage({ checkout: false, prebuild: 'garbage', buildInfo: 'current', buildTools: true });
    const r = runInstall(root);
    expectBuiltFromSource(r, root);
    expect(r.stdout).to.contain(`prebuilt ${rel} does not load here`).and.match(/invalid ELF header|file too short/);
  });

  it('builds from source when there is no prebuild for the platform, or afresh with BATCHNORM_BUILD_FROM_SOURCE=1', () => {
    const none = makeInstallPackage({ checkout: false, prebuild: null, buildInfo: null, buildTools: true });
    const r1 = runInstall(none);
    expectBuiltFromSource(r1, none);
    expect(r1.stdout).to.contain(`there is no prebuilt binary for ${platformDir}`);

    const good = makeInstallPackage({ checkout: true, prebuild: 'real', buildInfo: 'current', buildTools: true });
    const r2 = runInstall(good, { BATCHNORM_BUILD_FROM_SOURCE: '1' });
    expectBuiltFromSource(r2, good, 'rebuild');
    expect(r2.stdout).to.contain('BATCHNORM_BUILD_FROM_SOURCE=1');
  });

  it('without the optional build tools, fails with an error that says what to install', () => {
    const root = makeInstallPackage({ checkout: false, prebuild: 'garbage', buildInfo: null, buildTools: false });
    // The temporary folder must not see a cmake-js somewhere above it, or this would test nothing.
    const above = ['cmake-js/package.json', 'node-addon-api/package.json', 'node-api-headers/package.json'].filter((m) => {
      try {
        require.resolve(m, { paths: [path.join(root, 'scripts')] });
        return true;
      } catch {
        return false;
      }
    });
    expect(above, `visible from ${root} through a node_modules above it`).to.deep.equal([]);
    const r = runInstall(root);
    expect(r.status).to.equal(1);
    expect(r.cmakeJs).to.equal(null);
    expect(r.stderr).to.contain(`node-batchnorm: the prebuilt ${rel} does not load here`);
    expect(r.stderr).to.contain('cmake-js, node-addon-api, node-api-headers').and.contain('optional dependencies');
    expect(r.stderr).to.contain('`npm install cmake-js node-addon-api node-api-headers`').and.contain('`npm rebuild node-batchnorm`');
  });

  it('reports a failed build from source with what it needs, and exits with the build\'s status', () => {
    const root = makeInstallPackage({ checkout: false, prebuild: null, buildInfo: null, buildTools: true });
    const r = runInstall(root, { FAKE_CMAKE_JS_EXIT: '2' });
    expect(r.cmakeJs).to.not.equal(null);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.contain('building from source failed').and.contain('cmake >= 3.18').and.contain('OpenMP');
  });
});
