// The binaries the package ships: prebuilds/linux-x64 and prebuilds/linux-arm64, made by
// `npm run prebuild`. Not part of `npm test` (a fresh clone has no prebuilds/; the file name does
// not end in .test.ts, so the default mocha spec does not pick it up). Run it after the prebuild:
//
//   npm run prebuild
//   npx tsc -p tsconfig.json && node scripts/write-esm-wrapper.js
//   npx mocha --no-config --timeout 120000 dist/test/shipped/prebuilds.check.js
//
// (scripts/pack-smoke.sh runs it first.) Every check fails, never skips, when prebuilds/ is
// missing or was built from other sources. The hidden-libgomp check needs a private mount
// namespace (root, sudo -n, or user namespaces); without one it fails, unless
// PACK_SMOKE_NO_NAMESPACE=1 says so on purpose (then it is reported as pending, loudly).
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {
  EM_AARCH64, EM_X86_64, expectClose, makePackage, platformDir, prebuildSourceHash, probe, PROBE_Y, readElf,
  removeTempPackages, repo, shipped, shippedDir,
} from '../helpers/loader-probe';

const TARGETS = [['linux-x64', EM_X86_64], ['linux-arm64', EM_AARCH64]] as const;
const FILES = ['node-batchnorm.node', 'libgomp.so.1', 'build-info.json'];

interface BuildInfo {
  target: string;
  compiler: string;
  glibc: string;
  needed: string[];
  sourceHash: string;
}

const buildInfo = (t: string): BuildInfo =>
  JSON.parse(fs.readFileSync(path.join(repo, 'prebuilds', t, 'build-info.json'), 'utf8')) as BuildInfo;

after(removeTempPackages);

describe('shipped prebuilt binaries (prebuilds/, from npm run prebuild)', () => {
  before(() => {
    const missing = TARGETS.flatMap(([t]) => FILES.map((f) => path.join('prebuilds', t, f))).filter((f) => !fs.existsSync(path.join(repo, f)));
    if (missing.length > 0) {
      throw new Error(`missing ${missing.join(', ')}: run \`npm run prebuild\` before these checks`);
    }
    if (!TARGETS.some(([t]) => t === platformDir)) {
      throw new Error(`these checks load the prebuild for this host, and ${platformDir} is not one of ${TARGETS.map(([t]) => t).join(', ')}`);
    }
  });

  it('were built from the native sources in this tree (a stale prebuild would hide build/)', () => {
    const now = prebuildSourceHash();
    for (const [t] of TARGETS) {
      expect(buildInfo(t).sourceHash, `prebuilds/${t} is stale: run npm run prebuild`).to.equal(now);
    }
  });

  it('record their target, compiler and a glibc floor of at most 2.34 (what the README promises)', () => {
    for (const [t] of TARGETS) {
      const info = buildInfo(t);
      expect(info.target).to.equal(t);
      expect(info.compiler, t).to.match(/g\+\+|gcc/i);
      const [major, minor] = info.glibc.split('.').map(Number);
      expect(major, `${t} glibc ${info.glibc}`).to.equal(2);
      expect(minor, `${t} needs glibc ${info.glibc}`).to.be.at.most(34);
    }
  });

  it('are ELF objects for their architecture that find the bundled libgomp through RUNPATH $ORIGIN', () => {
    for (const [t, machine] of TARGETS) {
      const addon = readElf(path.join(repo, 'prebuilds', t, 'node-batchnorm.node'));
      expect(addon.machine, t).to.equal(machine);
      expect(addon.runpath, t).to.equal('$ORIGIN');
      expect(addon.needed, t).to.include('libgomp.so.1');
      const allowed = /^(libgomp\.so\.1|libgcc_s\.so\.1|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-.*)$/;
      for (const lib of addon.needed) expect(lib, `${t} needs ${lib}`).to.match(allowed);
      expect(addon.needed.some((l) => /libstdc\+\+/.test(l)), `${t} needs libstdc++ (should be static)`).to.equal(false);
      expect([...addon.needed].sort(), `${t}: build-info.json needed`).to.deep.equal([...buildInfo(t).needed].sort());
      const gomp = readElf(path.join(repo, 'prebuilds', t, 'libgomp.so.1'));
      expect(gomp.machine, `${t}/libgomp.so.1`).to.equal(machine);
      expect(gomp.needed.every((l) => /^(libc\.so\.6|libdl\.so\.2|libpthread\.so\.0|ld-linux-.*)$/.test(l)), gomp.needed.join(' ')).to.equal(true);
    }
  });

  it('load on purpose with BATCHNORM_BINDING and use the libgomp bundled beside them', () => {
    const root = makePackage(null, null);
    const r = probe(root, { BATCHNORM_BINDING: shipped });
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('env');
    expect(r.info!.binding.file).to.equal(shipped);
    expect(r.gomp).to.deep.equal([fs.realpathSync(path.join(shippedDir, 'libgomp.so.1'))]);
    expectClose(r.y, PROBE_Y);
  });

  it('are what a package copy loads by default, even with a broken build/ beside them', () => {
    const root = makePackage('shipped', 'garbage');
    const r = probe(root);
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('prebuild');
    expect(r.info!.binding.skipped).to.deep.equal([]);
    expect(r.gomp).to.deep.equal([path.join(fs.realpathSync(root), 'prebuilds', platformDir, 'libgomp.so.1')]);
    expectClose(r.y, PROBE_Y);
  });

  it('load with the system libgomp hidden (private mount namespace)', function () {
    // /dev/null is bind-mounted over each system libgomp.so.1*; dlopen("libgomp.so.1") must then
    // fail, and the shipped binary must still load (with the copy beside it). process.dlopen of a
    // library that is not an addon throws "Module did not self-register" once dlopen succeeded, so
    // that message means libgomp is still visible; any other error means it is hidden.
    const hide = `for f in /usr/lib/*/libgomp.so.1* /lib/*/libgomp.so.1* /usr/lib64/libgomp.so.1* /usr/lib/libgomp.so.1*; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then mount --bind /dev/null "$f" || exit 3; fi; done
      if "$0" -e 'try { process.dlopen({ exports: {} }, "libgomp.so.1") } catch (e) { process.exit(/self-register/.test(e.message) ? 0 : 1) }' 2>/dev/null; then
        echo "libgomp.so.1 still loads" >&2; exit 4; fi
      exec "$0" "$@"`;
    const candidates = [
      ...(process.getuid?.() === 0 ? [['unshare', '-m']] : []),
      ['sudo', '-n', 'unshare', '-m'],
      ['unshare', '-r', '-m'],
    ];
    const ns = candidates.find((cmd) => spawnSync(cmd[0], [...cmd.slice(1), 'true']).status === 0);
    if (!ns) {
      const why = 'no private mount namespace here (needs root, sudo -n or user namespaces)';
      if (process.env.PACK_SMOKE_NO_NAMESPACE === '1') {
        console.warn(`\n  *** NOT RUN: the hidden-libgomp load check: ${why}; PACK_SMOKE_NO_NAMESPACE=1 ***\n`);
        this.skip();
      }
      throw new Error(`cannot run the hidden-libgomp load check: ${why}. Set PACK_SMOKE_NO_NAMESPACE=1 to skip it on purpose`);
    }
    const root = makePackage('shipped', null);
    const r = probe(root, {}, [...ns, '/bin/sh', '-c', hide]);
    expect(r.ok, r.message).to.equal(true);
    expect(r.info!.binding.kind).to.equal('prebuild');
    expect(r.gomp).to.deep.equal([path.join(fs.realpathSync(root), 'prebuilds', platformDir, 'libgomp.so.1')]);
    expectClose(r.y, PROBE_Y);
  });
});
