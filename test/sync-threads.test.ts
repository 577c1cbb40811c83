// SyncBatchNorm over worker threads (ThreadGroup): the ranks together equal one BatchNorm on the
// concatenated batch; faults give coded errors on every rank, never a hang.
import { expect } from 'chai';
import * as os from 'os';
import * as bn from '../lib';
import { checkScenario, ProbeResult, threadProbe, threadScenario } from './sync-harness';
import type { Scenario } from './sync-rank';

export function scenarios(): Scenario[] {
  const base = { seed: 1, steps: 2, momentum: 0.1 as number | null, offset: 0.5, scale: 2 };
  return [
    { ...base, kind: '2d', C: 3, spatial: [5, 4], dtype: 'float32', channelsLast: false, batches: [4], useAsync: false },
    { ...base, kind: '2d', C: 4, spatial: [3, 3], dtype: 'float64', channelsLast: true, batches: [3], useAsync: true },
    { ...base, kind: '2d', C: 5, spatial: [6, 7], dtype: 'float32', channelsLast: false, batches: [3, 0], useAsync: false },
    { ...base, kind: '2d', C: 5, spatial: [6, 7], dtype: 'float64', channelsLast: true, batches: [0, 2], useAsync: true },
    { ...base, kind: '1d', C: 6, spatial: [], dtype: 'float32', channelsLast: false, batches: [2, 0, 5], useAsync: true, momentum: null },
    { ...base, kind: '3d', C: 3, spatial: [2, 3, 4], dtype: 'float64', channelsLast: false, batches: [1, 3, 0], useAsync: false },
    { ...base, kind: '2d', C: 7, spatial: [4, 4], dtype: 'float32', channelsLast: true, batches: [2, 1, 0, 3], useAsync: false },
    { ...base, kind: '1d', C: 9, spatial: [17], dtype: 'float64', channelsLast: false, batches: [0, 4, 1, 2], useAsync: true },
    { ...base, kind: '2d', C: 16, spatial: [3, 5], dtype: 'float32', channelsLast: false, batches: [1, 2, 0, 3, 1, 1, 2, 4], useAsync: true },
    { ...base, kind: '2d', C: 8, spatial: [2, 2], dtype: 'float64', channelsLast: true, batches: [3, 0, 2, 1, 1, 0, 2, 1], useAsync: false },
    // without affine parameters, and without running statistics
    { ...base, kind: '2d', C: 4, spatial: [3, 3], dtype: 'float32', channelsLast: false, batches: [2, 0, 3], useAsync: false, affine: false },
    { ...base, kind: '1d', C: 5, spatial: [6], dtype: 'float64', channelsLast: true, batches: [1, 2], useAsync: true, trackRunningStats: false },
    // mean 1e4, std 1e-2: the whole batch's statistics, not cancelled ones
    { ...base, kind: '2d', C: 2, spatial: [8, 8], dtype: 'float32', channelsLast: false, batches: [3, 1, 0, 4], useAsync: false, offset: 1e4, scale: 1e-2 },
  ];
}

function describeScenario(sc: Scenario): string {
  return `${sc.batches.length} rank(s) ${JSON.stringify(sc.batches)}, ${sc.kind}, C=${sc.C}, spatial [${sc.spatial}], ${sc.dtype}, ${sc.channelsLast ? 'channels-last' : 'NCHW'}, ${sc.useAsync ? 'async' : 'sync'}${sc.offset > 100 ? ', mean 1e4 std 1e-2' : ''}${sc.affine === false ? ', affine false' : ''}${sc.trackRunningStats === false ? ', no running statistics' : ''}`;
}

function eventsOf(rs: ProbeResult[]): string[][] {
  return rs.map((r) => r.events.map((e) => e.code ?? e.what));
}

describe('sync: SyncBatchNorm over worker threads (ThreadGroup)', function () {
  this.timeout(60000);

  for (const sc of scenarios()) {
    it(`equals one BatchNorm on the concatenated batch: ${describeScenario(sc)}`, async () => {
      checkScenario(sc, await threadScenario(sc));
    });
  }

  it('a rank that never arrives: the others get ERR_BN_SYNC_TIMEOUT after the timeout, then ERR_BN_SYNC_BROKEN', async () => {
    const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
    const rs = await threadProbe([t, { probe: 'absent' }, { ...t, useAsync: true }], 300);
    // The first rank to give up waited the whole timeout; the other learns it then (it may have
    // started waiting later).
    expect(Math.max(rs[0].events[0].ms as number, rs[2].events[0].ms as number)).to.be.within(290, 5000);
    for (const r of [rs[0], rs[2]]) {
      expect(r.events[0].code, JSON.stringify(r.events)).to.equal('ERR_BN_SYNC_TIMEOUT');
      expect(r.events[1].code).to.equal('ERR_BN_SYNC_BROKEN');
      expect(r.events[2].value).to.equal(true);
    }
  });

  it('mismatched channel counts or dtypes are reported on every rank (ERR_BN_SYNC_MISMATCH), naming each rank\'s call', async () => {
    for (const other of [{ C: 4 }, { dtype: 'float64' as const }]) {
      const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
      const o = { ...t, ...other, shape: [2, other.C ?? 3, 4] };
      const rs = await threadProbe([t, o, t], 5000);
      for (const r of rs) {
        expect(r.events[0].code, JSON.stringify(r.events)).to.equal('ERR_BN_SYNC_MISMATCH');
        expect(r.events[0].message).to.match(/rank 0: SyncBatchNorm forward \(batch statistics\) of 3 float32 channels; rank 1: .* of (4 float32|3 float64) channels/);
        expect(r.events[1].code).to.equal('ERR_BN_SYNC_BROKEN');
      }
    }
  });

  it('one value per channel over the whole group is ERR_BN_TOO_FEW_VALUES on every rank; the layer is unchanged and the group still works', async () => {
    const t = { probe: 'too-few' as const, C: 3, shape: [1, 3] };
    const rs = await threadProbe([t, { ...t, shape: [0, 3] }, { ...t, shape: [0, 3] }], 5000);
    for (const r of rs) {
      expect(r.events[0].code, JSON.stringify(r.events)).to.equal('ERR_BN_TOO_FEW_VALUES');
      expect(r.events[0].message).to.match(/received 1 over all 3 ranks/);
      const st = r.events[1].value as { before: unknown; after: unknown };
      expect(st.after).to.deep.equal(st.before);
      expect(r.events[2].value).to.equal(6); // 1 + 2 + 3
    }
  });

  it('evaluation mode communicates nothing: one rank alone runs its eval forward', async () => {
    const rs = await threadProbe([{ probe: 'eval-only', C: 3, shape: [2, 3, 4] }, { probe: 'absent' }], 60000);
    expect(eventsOf(rs)[0]).to.deep.equal(['eval']);
    expect(rs[0].events[0].ms).to.be.below(5000);
  });

  it('allReduce sums Float32Array and Float64Array in rank order, the same bits on every rank, longer than the capacity in pieces', async () => {
    const arrays = (r: number) => [Float64Array.of(1e16 * (r === 0 ? 1 : 0), r === 1 ? 1 : 0, r === 2 ? -1e16 : 0), Float32Array.from({ length: 10 }, (_, i) => i * (r + 1) + 0.1)];
    for (const useAsync of [false, true]) {
      const rs = await threadProbe([0, 1, 2].map((r) => ({ probe: 'allreduce' as const, arrays: arrays(r), useAsync })), 5000, 4);
      for (const r of rs) {
        const [a, b] = [r.events[0].value as Float64Array, r.events[1].value as Float32Array];
        expect(Array.from(a)).to.deep.equal([1e16, 1, -1e16]);
        const want = Float32Array.from({ length: 10 }, (_, i) => i * 6 + 0.1 * 3);
        for (let i = 0; i < 10; i++) expect(b[i]).to.be.closeTo(want[i], 1e-5);
        expect(Array.from(b)).to.deep.equal(Array.from(rs[0].events[1].value as Float32Array));
      }
    }
  });

  it('ThreadGroup checks its arguments, and each rank is joined once', () => {
    expect(() => bn.ThreadGroup.create(0)).to.throw().with.property('code', 'ERR_BN_OUT_OF_RANGE');
    expect(() => bn.ThreadGroup.create(2, { timeout: 5 } as never)).to.throw().with.property('code', 'ERR_BN_UNKNOWN_OPTION');
    const h = bn.ThreadGroup.create(2);
    expect(() => bn.ThreadGroup.join({ ...h, brand: 'x' } as never, 0)).to.throw().with.property('code', 'ERR_BN_INVALID_ARG_TYPE');
    expect(() => bn.ThreadGroup.join(h, 2)).to.throw().with.property('code', 'ERR_BN_OUT_OF_RANGE');
    const g = bn.ThreadGroup.join(h, 0);
    expect(g.rank).to.equal(0);
    expect(() => bn.ThreadGroup.join(h, 0)).to.throw().with.property('code', 'ERR_BN_SYNC_RANK_TAKEN');
    expect(() => new bn.SyncBatchNorm(3, { group: {} as never })).to.throw().with.property('code', 'ERR_BN_INVALID_ARG_TYPE');
    expect(() => new bn.SyncBatchNorm(40000, { group: g })).to.throw().with.property('code', 'ERR_BN_OUT_OF_RANGE');
    const layer = new bn.SyncBatchNorm(3, { group: g });
    expect(() => layer.forward.call({} as never, new Float32Array(6), [2, 3])).to.throw().with.property('code', 'ERR_BN_INVALID_ARG_TYPE');
    expect(() => new bn.SyncBatchNorm(3, { group: g, momentun: 0.1 } as never)).to.throw().with.property('code', 'ERR_BN_UNKNOWN_OPTION');
    // More than the machine has: refused before allocating, whatever the kernel's overcommit policy.
    const ranks = Math.min(4096, Math.ceil(os.totalmem() / (2 * 2 ** 27 * 8)) + 1);
    expect(() => bn.ThreadGroup.create(ranks, { capacity: 2 ** 27 })).to.throw(/exceed this machine's \d+ bytes of memory/).with.property('code', 'ERR_BN_OUT_OF_MEMORY');
    expect(() => bn.ThreadGroup.create(4096, { capacity: 2 ** 27 })).to.throw().with.property('code', 'ERR_BN_OUT_OF_MEMORY');
    g.destroy();
    expect(() => g.allReduce(new Float64Array(1))).to.throw().with.property('code', 'ERR_BN_SYNC_BROKEN');
  });

  it('SyncBatchNorm.from keeps parameters, running statistics and mode; toBatchNorm is the way back', () => {
    const g = bn.ThreadGroup.join(bn.ThreadGroup.create(1), 0);
    const b = new bn.BatchNorm2d(3, { momentum: 0.3, eps: 1e-3, dtype: 'float64' });
    (b.weight as Float64Array).set([1, 2, 3]);
    (b.bias as Float64Array).set([4, 5, 6]);
    (b.runningMean as Float64Array).set([7, 8, 9]);
    (b.runningVar as Float64Array).set([10, 11, 12]);
    b.numBatchesTracked = 5;
    b.eval();
    const s = bn.SyncBatchNorm.from(b, g);
    expect(s).to.be.instanceOf(bn.SyncBatchNorm2d);
    expect([s.eps, s.momentum, s.dtype, s.training, s.numBatchesTracked]).to.deep.equal([1e-3, 0.3, 'float64', false, 5]);
    expect(Array.from(s.runningVar as Float64Array)).to.deep.equal([10, 11, 12]);
    expect(s.weight).to.not.equal(b.weight);
    const back = s.toBatchNorm();
    expect(back).to.be.instanceOf(bn.BatchNorm2d);
    expect(back.stateDict()).to.deep.equal(b.stateDict());
    expect(() => bn.SyncBatchNorm.from({} as never, g)).to.throw().with.property('code', 'ERR_BN_INVALID_ARG_TYPE');
  });
});
