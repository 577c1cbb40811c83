// First file of the arm64 run (scripts/arm64-node-test.sh runs it under an arm64 Node in
// qemu-aarch64, before the slice of the suite): proves that what the slice tests is the shipped
// prebuilds/linux-arm64 binary at NEON, in a Node version package.json accepts. Not part of
// `npm test` (the name does not end in .test.ts): on an x86-64 Node every check here fails.
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import { detectedSimdLevel, runtimeInfo, simdLevel, supportedSimdLevels } from '../../lib';
import { prebuildSourceHash, repo } from '../helpers/loader-probe';

const prebuildDir = path.join(repo, 'prebuilds', 'linux-arm64');

/** [major, minor, patch] of "20", "20.16" or "20.16.0" (missing parts are 0). */
function version(v: string): number[] {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(v);
  if (!m) throw new Error(`not a plain version: '${v}'`);
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Whether `node` satisfies an engines range made of plain comparators (">=20.16", "<25",
 * ">=18.20 <19 || >=20.16"). Any other syntax throws, so a range this cannot read never passes.
 */
export function satisfies(node: string, range: string): boolean {
  const v = version(node);
  return range.split('||').some((alternative) =>
    alternative.trim().split(/\s+/).every((comparator) => {
      const m = /^(>=|<=|>|<|=)?(.+)$/.exec(comparator);
      if (!m) throw new Error(`engines comparator '${comparator}' is not understood`);
      const c = compare(v, version(m[2]));
      switch (m[1] ?? '=') {
        case '>=': return c >= 0;
        case '<=': return c <= 0;
        case '>': return c > 0;
        case '<': return c < 0;
        default: return c === 0;
      }
    }));
}

describe('arm64: the shipped linux-arm64 prebuild in an arm64 Node', () => {
  it('runs in an arm64 Node whose version package.json engines accepts', () => {
    expect(process.arch).to.equal('arm64');
    const engines = (JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node;
    expect(engines, 'package.json engines.node').to.be.a('string');
    expect(satisfies(process.versions.node, engines!), `Node ${process.versions.node} against engines "${engines}"`).to.equal(true);
  });

  it('loaded prebuilds/linux-arm64/node-batchnorm.node, built from the native sources of this tree', () => {
    const info = runtimeInfo();
    expect(info.binding.kind).to.equal('prebuild');
    expect(info.binding.file).to.equal(path.join(prebuildDir, 'node-batchnorm.node'));
    expect(info.arch, 'the arch the addon was compiled for').to.equal('arm64');
    const built = JSON.parse(fs.readFileSync(path.join(prebuildDir, 'build-info.json'), 'utf8')) as { target: string; sourceHash: string };
    expect(built.target).to.equal('linux-arm64');
    expect(built.sourceHash, 'prebuilds/linux-arm64 is stale: run npm run prebuild').to.equal(prebuildSourceHash());
  });

  it('detects NEON and uses it (BATCHNORM_SIMD unset)', () => {
    expect(process.env.BATCHNORM_SIMD, 'BATCHNORM_SIMD must not be set for this run').to.equal(undefined);
    expect(supportedSimdLevels()).to.deep.equal(['scalar', 'neon']);
    expect(detectedSimdLevel()).to.equal('neon');
    expect(simdLevel()).to.equal('neon');
  });

  it('maps the libgomp bundled beside it, and no other copy', () => {
    runtimeInfo(); // loads the addon if nothing has yet
    const mapped = fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
      .map((line) => line.split(/\s+/).slice(5).join(' ')).filter((p) => /libgomp\.so/.test(p));
    expect([...new Set(mapped)]).to.deep.equal([path.join(prebuildDir, 'libgomp.so.1')]);
  });
});

describe('arm64: the engines reader of the check above', () => {
  it('accepts and refuses versions as npm would for plain comparators, and throws on other syntax', () => {
    expect(satisfies('20.16.0', '>=20.16')).to.equal(true);
    expect(satisfies('20.15.1', '>=20.16')).to.equal(false);
    expect(satisfies('18.20.4', '>=20.16')).to.equal(false);
    expect(satisfies('18.20.4', '>=18.20 <19 || >=20.16')).to.equal(true);
    expect(satisfies('19.0.0', '>=18.20 <19 || >=20.16')).to.equal(false);
    expect(() => satisfies('20.16.0', '^20.16')).to.throw(/not a plain version/);
  });
});
