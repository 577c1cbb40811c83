// SyncBatchNorm across processes over Gloo (initProcessGroup): the same equivalence as the worker
// threads', the rendezvous (env://, tcp://, file://), and the faults: a killed rank, a rank that
// never joins, a port in use, and a missing or unloadable Gloo addon.
import { expect } from 'chai';
import { ChildProcess, execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as bn from '../lib';
import { glooPendingNote, itWithGloo } from './helpers/gloo';
import { checkScenario, freePort, ProbeResult, processProbe, processScenario } from './sync-harness';
import type { ProbeTask } from './sync-probe';
import type { Scenario } from './sync-rank';

const base = { seed: 2, steps: 2, momentum: 0.1 as number | null, offset: 0.5, scale: 2 };
const SCENARIOS: Scenario[] = [
  { ...base, kind: '2d', C: 3, spatial: [5, 4], dtype: 'float32', channelsLast: false, batches: [4], useAsync: false },
  { ...base, kind: '2d', C: 5, spatial: [6, 7], dtype: 'float64', channelsLast: true, batches: [3, 0], useAsync: true },
  { ...base, kind: '1d', C: 6, spatial: [], dtype: 'float32', channelsLast: false, batches: [0, 2, 5], useAsync: false },
  { ...base, kind: '3d', C: 4, spatial: [2, 3, 4], dtype: 'float64', channelsLast: false, batches: [1, 3, 0, 2], useAsync: true },
  { ...base, kind: '2d', C: 8, spatial: [3, 3], dtype: 'float32', channelsLast: true, batches: [2, 0, 1, 3, 1, 1, 0, 2], useAsync: true },
  // 2C + 1 > 1023: the payload follows the header in a second Gloo all-gather
  { ...base, kind: '2d', C: 600, spatial: [2, 2], dtype: 'float64', channelsLast: false, batches: [2, 0, 3], useAsync: false },
];

describe(`sync: SyncBatchNorm across processes over Gloo (initProcessGroup)${glooPendingNote()}`, function () {
  this.timeout(60000);
  const itGloo = itWithGloo();

  for (const sc of SCENARIOS) {
    itGloo(`equals one BatchNorm on the concatenated batch: ${sc.batches.length} process(es) ${JSON.stringify(sc.batches)}, ${sc.kind}, ${sc.dtype}, ${sc.channelsLast ? 'channels-last' : 'NCHW'}, ${sc.useAsync ? 'async' : 'sync'}`, async () => {
      checkScenario(sc, await processScenario(sc));
    });
  }

  itGloo('rendezvous by tcp://HOST:PORT and by file:///path', async () => {
    const sc = SCENARIOS[2];
    const port = await freePort();
    checkScenario(sc, await processScenario(sc, { initMethod: `tcp://127.0.0.1:${port}`, masterAddr: '203.0.113.1' }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-gloo-file-'));
    try {
      checkScenario(sc, await processScenario(sc, { initMethod: `file://${dir}` }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // A surviving rank ends in one of two ways: it joined and a collective fails (the peer's
  // connection closed, or the timeout), or its own rendezvous fails because a rank it still had to
  // connect to died or gave up (issue 15's hang: Gloo waited 5x the timeout for that connection).
  function expectCodedEnd(r: ProbeResult, killedAt: number, timeoutMs: number): void {
    const ev = r.events;
    const err = ev.find((e) => e.code !== undefined);
    expect(err, JSON.stringify(ev)).to.not.equal(undefined);
    if (ev[0].what === 'joined') {
      expect(['ERR_BN_SYNC_PEER_LOST', 'ERR_BN_SYNC_TIMEOUT'], JSON.stringify(ev)).to.include(err?.code);
      expect(ev.find((e) => e.what === 'state kept')?.value, 'the failed call left the layer as it was').to.equal(true);
      expect(ev.find((e) => e.what === 'after')?.code, 'the group is broken afterwards').to.equal('ERR_BN_SYNC_BROKEN');
    } else {
      expect(['ERR_BN_SYNC_RENDEZVOUS', 'ERR_BN_SYNC_TIMEOUT'], JSON.stringify(ev)).to.include(err?.code);
    }
    expect((err?.at as number) - killedAt, `ms from the kill to rank ${r.rank}'s error`).to.be.below(timeoutMs + 2500);
  }

  const steps = (r: number, C = 3) => ({ probe: 'steps' as const, C, shape: [2, C, 4], useAsync: r === 3 });
  // 'header': 600 channels, so that the statistics (2C + 1 values) follow the header's all-gather
  const KILLS: Array<{ when: string; C: number; dieAt: ProbeTask['dieAt'] }> = [
    { when: 'right after its rendezvous', C: 3, dieAt: 'joined' },
    { when: 'between the header and the payload all-gathers of a forward', C: 600, dieAt: 'header' },
    { when: 'between forward and backward', C: 3, dieAt: 'forward' },
  ];
  for (const k of KILLS) {
    itGloo(`a rank killed ${k.when}: every other rank gets a coded error within the timeout, the layer unchanged, the group broken`, async () => {
      const timeoutMs = 2000;
      let killedAt = 0;
      let signal: string | null = null;
      const dying: ProbeTask = { probe: 'die', dieAt: k.dieAt, C: k.C, shape: [2, k.C, 4] };
      const rs = await processProbe([steps(0, k.C), dying, steps(2, k.C), steps(3, k.C)], {
        timeoutMs,
        onSpawn: (rank, child) => {
          if (rank === 1) child.once('exit', (_c, sig) => { killedAt = Date.now(); signal = sig; });
        },
      });
      expect(signal, 'the rank died by its own SIGKILL where the test put it').to.equal('SIGKILL');
      for (const r of [rs[0], rs[2], rs[3]]) expectCodedEnd(r, killedAt, timeoutMs);
    });
  }

  itGloo('a rank killed by its parent after the rendezvous (the first test of issue 15) gives every other rank a coded error, never a hang', async () => {
    const timeoutMs = 2000;
    let killedAt = 0;
    const rs = await processProbe([steps(0), { probe: 'hang' }, steps(2), steps(3)], {
      timeoutMs,
      onSpawn: (rank, child) => {
        if (rank === 1) child.once('message', () => { killedAt = Date.now(); child.kill('SIGKILL'); });
      },
    });
    expect(rs[1].events[0].what).to.equal('hanging');
    for (const r of [rs[0], rs[2], rs[3]]) expectCodedEnd(r, killedAt, timeoutMs);
  });

  itGloo('a rank that published its address but never connects: the others\' rendezvous ends with ERR_BN_SYNC_TIMEOUT at the timeout (Gloo alone waits 5x it), naming that rank', async () => {
    const timeoutMs = 3000;
    const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
    const rs = await processProbe([t, t, { probe: 'publish-only' }], { timeoutMs });
    expect(rs[2].events[0].what, JSON.stringify(rs[2].events)).to.equal('published');
    for (const r of [rs[0], rs[1]]) {
      const ev = r.events;
      expect(ev[0].code, JSON.stringify(ev)).to.equal('ERR_BN_SYNC_TIMEOUT');
      expect(ev[0].ms as number, 'ms from the start of the rendezvous').to.be.within(timeoutMs - 50, timeoutMs + 2500);
      expect(ev[0].message).to.match(new RegExp(`rank ${r.rank} was connecting to rank 2 at 127\\.0\\.0\\.2:9 when the timeout passed`));
    }
  });

  itGloo('destroy() while an async collective waits for a rank that never comes: returns at once, the collective rejects with ERR_BN_SYNC_BROKEN', async () => {
    const port = await freePort();
    const init = (rank: number) => bn.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank, worldSize: 2, timeoutMs: 20000 });
    const [g0, g1] = await Promise.all([init(0), init(1)]);
    try {
      const pending = g0.allReduceAsync(Float64Array.of(1)).then(() => null, (e) => e);
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      g0.destroy();
      expect(Date.now() - t0, 'ms destroy() blocked').to.be.below(1000);
      const err = await pending;
      expect(err?.code, String(err)).to.equal('ERR_BN_SYNC_BROKEN');
      expect(Date.now() - t0, 'ms until the collective settled').to.be.below(2000);
    } finally {
      g0.destroy();
      g1.destroy();
    }
  });

  itGloo('a rank that joined but never arrives at a collective: the others get ERR_BN_SYNC_TIMEOUT after the timeout', async () => {
    const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
    // The timeout bounds the rendezvous too: long enough for 3 processes to start on a loaded
    // machine. The hanging rank stays alive until the others have finished (no lost peer).
    const timeoutMs = 2500;
    const others: ChildProcess[] = [];
    let hanging: ChildProcess | undefined;
    const rs = await processProbe([t, { probe: 'hang' }, { ...t, useAsync: true }], {
      timeoutMs,
      onSpawn: (rank, child) => {
        if (rank === 1) hanging = child;
        else others.push(child);
        child.once('close', () => {
          if (others.length === 2 && others.every((c) => c.exitCode !== null || c.signalCode !== null)) hanging?.kill('SIGKILL');
        });
      },
    });
    for (const r of [rs[0], rs[2]]) {
      expect(r.events[0].what, JSON.stringify(r.events)).to.equal('joined');
      expect(r.events[1].code, JSON.stringify(r.events)).to.equal('ERR_BN_SYNC_TIMEOUT');
      expect(r.events[1].ms as number, "ms from the start of the probe (after the rendezvous)").to.be.within(timeoutMs - 50, timeoutMs + 3000);
      expect(r.events[2].code).to.equal('ERR_BN_SYNC_BROKEN');
    }
  });

  itGloo('mismatched channel counts across processes: ERR_BN_SYNC_MISMATCH on every rank, naming each rank\'s call', async () => {
    const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
    // 5 channels: the payload rides in the first all-gather; 700: it would follow in a second one
    for (const C of [5, 700]) {
      const rs = await processProbe([t, { ...t, C, shape: [2, C, 4] }, t], { timeoutMs: 5000 });
      for (const r of rs) {
        expect(r.events[1].code, JSON.stringify(r.events)).to.equal('ERR_BN_SYNC_MISMATCH');
        expect(r.events[1].message).to.include(`rank 1: SyncBatchNorm forward (batch statistics) of ${C} float32 channels`);
        expect(r.events[2].code).to.equal('ERR_BN_SYNC_BROKEN');
      }
    }
  });

  itGloo('allReduce across processes: rank-order float64 sums, the same bits on every rank (sync and async)', async () => {
    const arrays = (r: number) => [Float64Array.of(r === 0 ? 1e16 : 0, r === 1 ? 1 : 0, r === 2 ? -1e16 : 0), Float32Array.from({ length: 5 }, (_, i) => i * (r + 1) + 0.1)];
    const rs = await processProbe([0, 1, 2].map((r) => ({ probe: 'allreduce' as const, arrays: arrays(r), useAsync: r === 1 })), { timeoutMs: 5000 });
    for (const r of rs) {
      expect(r.events[0].what, JSON.stringify(r.events)).to.equal('joined');
      expect(Array.from(r.events[1].value as Float64Array)).to.deep.equal([1e16, 1, -1e16]);
      expect(Array.from(r.events[2].value as Float32Array)).to.deep.equal(Array.from(rs[0].events[2].value as Float32Array));
      const want = Float32Array.from({ length: 5 }, (_, i) => i * 6 + 0.3);
      (r.events[2].value as Float32Array).forEach((v, i) => expect(v).to.be.closeTo(want[i], 1e-5));
    }
  });

  itGloo('allReduce of 1023 and 1024 values: the last payload carried in the fixed-size all-gather and the first that follows it, both exact', async () => {
    const arrays = (r: number) => [1023, 1024].map((n) => Float64Array.from({ length: n }, (_, i) => (i + 1) * (r + 1) + i / 8));
    const rs = await processProbe([0, 1].map((r) => ({ probe: 'allreduce' as const, arrays: arrays(r), useAsync: r === 1 })), { timeoutMs: 5000 });
    for (const r of rs) {
      expect(r.events[0].what, JSON.stringify(r.events).slice(0, 300)).to.equal('joined');
      for (const [k, n] of [1023, 1024].entries()) {
        const want = Array.from({ length: n }, (_, i) => ((i + 1) + i / 8) + ((i + 1) * 2 + i / 8));
        expect(Array.from(r.events[1 + k].value as Float64Array), `${n} values`).to.deep.equal(want);
      }
    }
  });

  itGloo('a rank that never joins: the rendezvous gives ERR_BN_SYNC_TIMEOUT after timeoutMs', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await bn.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 0, worldSize: 2, timeoutMs: 800 }).then(() => null, (e) => e);
    expect(err?.code, String(err)).to.equal('ERR_BN_SYNC_TIMEOUT');
    expect(Date.now() - t0).to.be.within(700, 10000);
    const err1 = await bn.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 1, worldSize: 2, timeoutMs: 500 }).then(() => null, (e) => e);
    expect(err1?.code, String(err1)).to.equal('ERR_BN_SYNC_TIMEOUT');
    expect(err1.message).to.match(/could not reach the rendezvous at 127\.0\.0\.1:\d+/);
  });

  itGloo('rank 0 cannot listen on a port in use: ERR_BN_SYNC_RENDEZVOUS naming the port', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const err = await bn.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 0, worldSize: 2, timeoutMs: 500 }).then(() => null, (e) => e);
      expect(err?.code, String(err)).to.equal('ERR_BN_SYNC_RENDEZVOUS');
      expect(err.message).to.include(`port ${port}`);
    } finally {
      server.close();
    }
  });

  itGloo('initProcessGroup checks its options and the environment convention', async () => {
    const reject = (o: object) => bn.initProcessGroup(o as never).then(() => null, (e) => e.code);
    const saved = { ...process.env };
    try {
      for (const k of ['MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE']) delete process.env[k];
      expect(await reject({ backend: 'nccl', rank: 0, worldSize: 1 })).to.equal('ERR_BN_OUT_OF_RANGE');
      expect(await reject({ rank: 0 })).to.equal('ERR_BN_INVALID_ARG_TYPE'); // no worldSize, no WORLD_SIZE
      expect(await reject({ rank: 2, worldSize: 2 })).to.equal('ERR_BN_OUT_OF_RANGE');
      expect(await reject({ rank: 0, worldSize: 1 })).to.equal('ERR_BN_INVALID_ARG_TYPE'); // env:// without MASTER_ADDR
      expect(await reject({ rank: 0, worldSize: 1, initMethod: 'udp://x:1' })).to.equal('ERR_BN_OUT_OF_RANGE');
      expect(await reject({ rank: 0, worldSize: 1, initMethod: 'file://relative' })).to.equal('ERR_BN_OUT_OF_RANGE');
      expect(await reject({ rank: 0, worldSize: 1, port: 5 })).to.equal('ERR_BN_UNKNOWN_OPTION');
      process.env.WORLD_SIZE = 'two';
      expect(await reject({ rank: 0 })).to.equal('ERR_BN_OUT_OF_RANGE');
      // PyTorch's variables, all from the environment: a world of one
      Object.assign(process.env, { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(await freePort()), RANK: '0', WORLD_SIZE: '1' });
      const g = await bn.initProcessGroup();
      expect([g.backend, g.rank, g.worldSize]).to.deep.equal(['gloo', 0, 1]);
      const a = Float32Array.of(1.5, 2);
      g.allReduce(a);
      expect(Array.from(a)).to.deep.equal([1.5, 2]);
      g.destroy();
      expect(() => g.allReduce(a)).to.throw().with.property('code', 'ERR_BN_SYNC_BROKEN');
    } finally {
      for (const k of ['MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE']) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  const lib = path.resolve(__dirname, '..', 'lib');
  const initScript = `require(${JSON.stringify(lib)}).initProcessGroup({ rank: 0, worldSize: 1, initMethod: 'tcp://127.0.0.1:1' })` +
    '.then(() => console.log("no error"), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))';
  const initWith = (env: Record<string, string>) =>
    JSON.parse(execFileSync(process.execPath, ['-e', initScript], { env: { ...process.env, ...env }, encoding: 'utf8' }).trim());

  it('without the Gloo addon, initProcessGroup says what is missing and how to install it (ERR_BN_GLOO_UNAVAILABLE)', () => {
    const missing = initWith({ BATCHNORM_GLOO_BINDING: '/nonexistent/batchnorm_gloo.node' });
    expect(missing.code).to.equal('ERR_BN_GLOO_UNAVAILABLE');
    expect(missing.message).to.include('apt-get install -y libgloo-dev');
  });

  itGloo('the Gloo addon without libgloo: ERR_BN_GLOO_UNAVAILABLE names the library and how to install it', () => {
    // The real addon with libgloo hidden: the loader's message names the library.
    const real = path.resolve(__dirname, '..', '..', 'build', 'Release', 'batchnorm_gloo.node');
    const libgloo = spawnSync('ldd', [real], { encoding: 'utf8' }).stdout.match(/libgloo\S*/)?.[0];
    expect(libgloo, 'batchnorm_gloo.node links libgloo').to.be.a('string');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-nogloo-'));
    try {
      fs.copyFileSync(real, path.join(dir, 'batchnorm_gloo.node'));
      // An empty file under libgloo's name first on the search path: the dynamic loader fails on it.
      fs.writeFileSync(path.join(dir, libgloo as string), '');
      const broken = initWith({ BATCHNORM_GLOO_BINDING: path.join(dir, 'batchnorm_gloo.node'), LD_LIBRARY_PATH: dir });
      expect(broken.code).to.equal('ERR_BN_GLOO_UNAVAILABLE');
      expect(broken.message).to.include(libgloo as string);
      expect(broken.message).to.include('apt-get install -y libgloo-dev');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  itGloo('batchnorm_gloo.node is loaded by the first initProcessGroup, not by the library or a ThreadGroup', () => {
    const script = `const bn = require(${JSON.stringify(lib)}); const fs = require('fs');
      const loaded = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('batchnorm_gloo');
      const g = bn.ThreadGroup.join(bn.ThreadGroup.create(1), 0);
      new bn.SyncBatchNorm(3, { group: g }).forward(new Float32Array(6), [2, 3]);
      const before = loaded();
      bn.initProcessGroup({ rank: 0, worldSize: 1, initMethod: 'tcp://127.0.0.1:1' }).catch(() => undefined)
        .finally(() => { console.log(JSON.stringify([before, loaded()])); process.exit(0); });`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
    expect(JSON.parse(out)).to.deep.equal([false, true]);
  });

  it('the main addon does not depend on Gloo (it loads without it)', () => {
    const main = path.resolve(__dirname, '..', '..', 'build', 'Release', 'batchnorm.node');
    const deps = spawnSync('ldd', [main], { encoding: 'utf8' }).stdout;
    expect(deps).to.not.match(/gloo|hiredis|ibverbs/);
  });
});
