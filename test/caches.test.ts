// The cache sizes the core sizes its pieces from (issue 16: machine facts, not constants), as
// runtimeInfo reports them; the parsers behind them have table tests in native/test/plan_test.cc.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as bn from '../lib';

describe('runtimeInfo().caches', () => {
  it('reports the L2 and L3 the core uses, and where they came from', () => {
    const c = bn.runtimeInfo().caches;
    assert.ok(['sysfs', 'sysconf', 'default'].includes(c.source), `source ${c.source}`);
    assert.ok(c.l2Bytes >= 256 * 1024 && c.l2Bytes <= 4 * 1024 * 1024, `L2 ${c.l2Bytes} outside its clamp`);
    assert.ok(c.l3Bytes >= 0 && Number.isInteger(c.l3Bytes), `L3 ${c.l3Bytes}`);
    assert.ok(c.l3Sharing >= 1, `L3 sharing ${c.l3Sharing}`);
  });

  it('takes sysfs over sysconf where sysfs has the L2', function () {
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    if (!fs.existsSync(dir)) this.skip(); // not Linux: sysconf or the default; the native table covers both
    let l2 = 0;
    for (const idx of fs.readdirSync(dir).filter((d) => d.startsWith('index'))) {
      const read = (f: string) => fs.readFileSync(`${dir}/${idx}/${f}`, 'utf8').trim();
      if (read('level') === '2' && read('type') !== 'Instruction') {
        const m = /^(\d+)([KMG]?)$/.exec(read('size'));
        if (m) l2 = Number(m[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]];
      }
    }
    if (l2 === 0) this.skip(); // sysfs without an L2 entry: the fallback is covered natively
    const c = bn.runtimeInfo().caches;
    assert.equal(c.source, 'sysfs');
    assert.equal(c.l2Bytes, Math.min(Math.max(l2, 256 * 1024), 4 * 1024 * 1024));
  });
});
