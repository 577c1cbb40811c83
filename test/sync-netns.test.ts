// SyncBatchNorm across "machines": every rank in its own network namespace, joined by veth pairs
// through a bridge, Gloo over their 10.77.0.x addresses (and nothing else). Needs root: without it
// the test fails and says so (CI runs as root).
import { expect } from 'chai';
import { execFileSync } from 'child_process';
import { glooPendingNote, itWithGloo } from './helpers/gloo';
import { createNetwork, cutOff, Network, netnsUnavailable, removeNetwork } from './helpers/netns';
import { checkScenario, processProbe, processScenario } from './sync-harness';
import type { Scenario } from './sync-rank';

describe(`sync: SyncBatchNorm across network namespaces over Gloo${glooPendingNote()}`, function () {
  this.timeout(60000);
  const itGloo = itWithGloo();
  let net: Network | null = null;

  before(function () {
    const why = netnsUnavailable();
    if (why) throw new Error(why);
    net = createNetwork(3);
  });

  after(() => {
    if (net) removeNetwork(net);
  });

  const wrap = (r: number) => ['ip', 'netns', 'exec', (net as Network).names[r]];

  it('the namespaces reach each other only over the bridge (10.77.0.x), not the host', () => {
    const n = net as Network;
    const out = execFileSync('ip', ['netns', 'exec', n.names[1], 'ip', '-4', '-o', 'addr'], { encoding: 'utf8' });
    expect(out).to.include('10.77.0.2/24');
    expect(out).to.not.match(/inet (?!127\.|10\.77\.0\.)/);
  });

  itGloo('3 ranks on 3 "machines" equal one BatchNorm on the concatenated batch (Gloo over 10.77.0.x)', async () => {
    const sc: Scenario = {
      kind: '2d', C: 4, spatial: [5, 3], dtype: 'float32', channelsLast: false, batches: [2, 0, 3], seed: 9, steps: 2,
      momentum: 0.1, useAsync: true, offset: 1, scale: 2,
    };
    const n = net as Network;
    checkScenario(sc, await processScenario(sc, { wrap, masterAddr: n.addresses[0], timeoutMs: 10000 }));
  });

  itGloo('a rank cut off the network (then killed) gives the others ERR_BN_SYNC_TIMEOUT after the timeout', async () => {
    const n = net as Network;
    const t = { probe: 'forward-twice' as const, C: 3, shape: [2, 3, 4] };
    try {
      const rs = await processProbe([t, t, { probe: 'hang' }], {
        // the timeout bounds the rendezvous too: room for 3 processes to start on a loaded machine
        wrap, masterAddr: n.addresses[0], timeoutMs: 3000,
        onSpawn: (rank, child) => {
          if (rank === 2) {
            child.once('message', () => {
              cutOff(n, 2);
              child.kill('SIGKILL');
            });
          }
        },
      });
      for (const r of [rs[0], rs[1]]) {
        const ev = r.events;
        expect(ev[0].what, JSON.stringify(ev)).to.equal('joined');
        expect(ev[1].code, JSON.stringify(ev)).to.equal('ERR_BN_SYNC_TIMEOUT');
        expect(ev[1].ms as number, "ms from the start of the probe (after the rendezvous)").to.be.within(2950, 7500);
        expect(ev[2].code).to.equal('ERR_BN_SYNC_BROKEN');
      }
    } finally {
      execFileSync('ip', ['-n', n.names[2], 'link', 'set', n.devices[2], 'up']);
    }
  });
});
