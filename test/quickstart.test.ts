// The README's quick start (examples/quickstart.ts) runs and gives sane values.
import { expect } from 'chai';
import * as fs from 'fs';
import { quickstart } from '../examples/quickstart';

describe('README quick start (examples/quickstart.ts)', () => {
  it('runs end to end: train forward/backward, eval, in place, fold, save', () => {
    const r = quickstart();
    expect(['scalar', 'avx2', 'avx512', 'neon']).to.include(r.simd);
    expect(Number.isFinite(r.y0) && Number.isFinite(r.dx0) && Number.isFinite(r.folded)).to.equal(true);
    expect(fs.statSync(r.file).size).to.be.above(64 * 4 * 4);
    fs.unlinkSync(r.file);
  });
});
