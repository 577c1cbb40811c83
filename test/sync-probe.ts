// One rank of a fault or API probe of the sync tests, in a worker thread (workerData) or a child
// process (BN_SYNC_PROBE, a Gloo group from the environment). Reports what happened, in order.
import { isMainThread, parentPort, workerData } from 'worker_threads';
import * as bn from '../lib';

export interface ProbeTask {
  probe: 'absent' | 'forward-twice' | 'allreduce' | 'eval-only' | 'too-few' | 'hang';
  /** forward-twice / too-few / eval-only: the layer's channels, dtype and this rank's shape. */
  C?: number;
  dtype?: 'float32' | 'float64';
  shape?: number[];
  useAsync?: boolean;
  /** allreduce: this rank's arrays. */
  arrays?: Array<Float32Array | Float64Array>;
}

export interface ProbeEvent {
  what: string;
  code?: string;
  message?: string;
  /** ms since the probe started (for 'joined': since the process began the rendezvous). */
  ms?: number;
  value?: unknown;
}

function caught(what: string, e: unknown, t0: number): ProbeEvent {
  return { what, code: (e as { code?: string }).code, message: (e as Error).message, ms: Date.now() - t0 };
}

async function probe(t: ProbeTask, group: bn.SyncGroup): Promise<ProbeEvent[]> {
  const ev: ProbeEvent[] = [];
  const t0 = Date.now();
  const layer = () => new bn.SyncBatchNorm(t.C as number, { group, dtype: t.dtype ?? 'float32' });
  const input = () => new (t.dtype === 'float64' ? Float64Array : Float32Array)((t.shape as number[]).reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i + group.rank));
  switch (t.probe) {
    case 'absent':
      return ev;
    case 'hang':
      // Joined; tells the parent (which may kill it now), then never calls a collective.
      process.send?.({ rank: group.rank, events: [{ what: 'hanging' }] });
      await new Promise((r) => setTimeout(r, 60_000));
      return ev;
    case 'forward-twice': {
      const l = layer();
      for (let i = 0; i < 2; i++) {
        try {
          if (t.useAsync) await l.forwardAsync(input(), t.shape as number[]);
          else l.forward(input(), t.shape as number[]);
          ev.push({ what: 'ok', ms: Date.now() - t0 });
        } catch (e) {
          ev.push(caught('forward', e, t0));
        }
      }
      ev.push({ what: 'broken', value: group.broken });
      return ev;
    }
    case 'allreduce': {
      for (const a of t.arrays as Array<Float32Array | Float64Array>) {
        if (t.useAsync) await group.allReduceAsync(a);
        else group.allReduce(a);
        ev.push({ what: 'reduced', value: a });
      }
      return ev;
    }
    case 'eval-only': {
      const l = layer();
      l.eval();
      const y = t.useAsync ? await l.forwardAsync(input(), t.shape as number[]) : l.forward(input(), t.shape as number[]);
      ev.push({ what: 'eval', ms: Date.now() - t0, value: y.length });
      return ev;
    }
    case 'too-few': {
      const l = layer();
      const before = { rm: Array.from(l.runningMean as Float32Array), rv: Array.from(l.runningVar as Float32Array), n: l.numBatchesTracked };
      try {
        l.forward(input(), t.shape as number[]);
        ev.push({ what: 'ok' });
      } catch (e) {
        ev.push(caught('forward', e, t0));
      }
      const after = { rm: Array.from(l.runningMean as Float32Array), rv: Array.from(l.runningVar as Float32Array), n: l.numBatchesTracked };
      ev.push({ what: 'state', value: { before, after } });
      const a = Float64Array.of(group.rank + 1);
      group.allReduce(a);
      ev.push({ what: 'still usable', value: a[0] });
      return ev;
    }
  }
}

async function main(): Promise<void> {
  if (!isMainThread && workerData?.syncProbe) {
    const { handle, rank, task } = workerData as { handle: bn.ThreadGroupHandle; rank: number; task: ProbeTask };
    let ev: ProbeEvent[];
    try {
      ev = await probe(task, bn.ThreadGroup.join(handle, rank));
    } catch (e) {
      ev = [caught('uncaught', e, Date.now())];
    }
    parentPort?.postMessage({ rank, events: ev });
    return;
  }
  if (isMainThread && process.env.BN_SYNC_PROBE && process.send) {
    const task = JSON.parse(process.env.BN_SYNC_PROBE, (_k, v) => (v && v.f64 ? Float64Array.from(v.f64) : v && v.f32 ? Float32Array.from(v.f32) : v)) as ProbeTask;
    const t0 = Date.now();
    let ev: ProbeEvent[];
    try {
      const group = await bn.initProcessGroup({ initMethod: process.env.BN_SYNC_INIT, timeoutMs: Number(process.env.BN_SYNC_TIMEOUT_MS ?? 20000) });
      ev = [{ what: 'joined', ms: Date.now() - t0 }, ...(await probe(task, group))];
    } catch (e) {
      ev = [caught('uncaught', e, t0)];
    }
    process.send({ rank: Number(process.env.RANK), events: ev }, () => process.exit(0));
  }
}

void main();
