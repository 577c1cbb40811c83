// One rank of a fault or API probe of the sync tests, in a worker thread (workerData) or a child
// process (BN_SYNC_PROBE, a Gloo group from the environment). Reports what happened, in order.
import * as net from 'net';
import { isMainThread, parentPort, workerData } from 'worker_threads';
import * as bn from '../lib';
import { INLINE_PAYLOAD, loadGloo } from '../lib/sync/gloo';
import { HEADER_LENGTH } from '../lib/sync/group';

export interface ProbeTask {
  probe: 'absent' | 'forward-twice' | 'allreduce' | 'eval-only' | 'too-few' | 'hang' | 'steps' | 'die' | 'publish-only';
  /** forward-twice / too-few / eval-only: the layer's channels, dtype and this rank's shape. */
  C?: number;
  dtype?: 'float32' | 'float64';
  shape?: number[];
  useAsync?: boolean;
  /** allreduce: this rank's arrays. */
  arrays?: Array<Float32Array | Float64Array>;
  /** steps: forward+backward steps to run (until an error; default 1e6, bounded by 30 s). */
  steps?: number;
  /** die (a Gloo rank SIGKILLs itself): right after joining, after the header all-gather of the
   * first forward (the payload's never comes), or after a whole forward (before backward). */
  dieAt?: 'joined' | 'header' | 'forward';
}

/** The layer's state that a failed call must leave as it was. */
function snapshot(l: bn.SyncBatchNorm): string {
  const a = (x: Float32Array | Float64Array | null) => (x ? Array.from(x) : null);
  return JSON.stringify([a(l.weight), a(l.bias), a(l.runningMean), a(l.runningVar), a(l.gradWeight), a(l.gradBias), l.numBatchesTracked]);
}

export interface ProbeEvent {
  what: string;
  code?: string;
  message?: string;
  /** ms since the probe started (for 'joined': since the process began the rendezvous). */
  ms?: number;
  /** Date.now() when it happened (the parent compares it with the moment it killed a rank). */
  at?: number;
  value?: unknown;
}

function caught(what: string, e: unknown, t0: number): ProbeEvent {
  return { what, code: (e as { code?: string }).code, message: (e as Error).message, ms: Date.now() - t0, at: Date.now() };
}

// The first all-gather of a forward of C float32 channels (lib/sync/gloo.ts), sent by hand so that a
// rank can die between it and the payload's all-gather: C > 511, so that the payload (2C + 1 values)
// does not ride in the first one.
function dieAfterHeader(group: bn.SyncGroup, C: number): void {
  if (2 * C + 1 <= INLINE_PAYLOAD) throw new Error(`dieAt 'header' needs more than ${(INLINE_PAYLOAD - 1) / 2} channels`);
  const g = loadGloo();
  const handle = (group as unknown as { handle: object }).handle;
  const first = new Float64Array(HEADER_LENGTH + INLINE_PAYLOAD);
  first.set([1, C, 0, 2 * C + 1]);
  g.allGather(handle, first, new Float64Array(first.length * group.worldSize));
  process.kill(process.pid, 'SIGKILL');
}

async function probe(t: ProbeTask, group: bn.SyncGroup): Promise<ProbeEvent[]> {
  const ev: ProbeEvent[] = [];
  const t0 = Date.now();
  const layer = () => new bn.SyncBatchNorm(t.C as number, { group, dtype: t.dtype ?? 'float32' });
  const input = () => new (t.dtype === 'float64' ? Float64Array : Float32Array)((t.shape as number[]).reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i + group.rank));
  switch (t.probe) {
    case 'absent':
    case 'publish-only': // handled before the rendezvous (main)
      return ev;
    case 'hang':
      // Joined; tells the parent (which may kill it now), then never calls a collective.
      process.send?.({ rank: group.rank, events: [{ what: 'hanging' }] });
      await new Promise((r) => setTimeout(r, 60_000));
      return ev;
    case 'steps': {
      // Forward and backward until a collective fails (a rank died), then one more call.
      process.send?.({ rank: group.rank, events: [{ what: 'stepping', at: Date.now() }] });
      const l = layer();
      const until = Date.now() + 30_000;
      let i = 0;
      let before = '';
      for (; i < (t.steps ?? 1e6) && Date.now() < until; i++) {
        try {
          before = snapshot(l);
          if (t.useAsync) await l.forwardAsync(input(), t.shape as number[]);
          else l.forward(input(), t.shape as number[]);
          before = snapshot(l);
          if (t.useAsync) await l.backwardAsync(input());
          else l.backward(input());
        } catch (e) {
          ev.push(caught('step', e, t0));
          ev.push({ what: 'state kept', value: snapshot(l) === before || `${before} -> ${snapshot(l)}` });
          break;
        }
      }
      ev.push({ what: 'steps', value: i });
      try {
        l.forward(input(), t.shape as number[]);
        ev.push({ what: 'ok' });
      } catch (e) {
        ev.push(caught('after', e, t0));
      }
      return ev;
    }
    case 'die': {
      const l = layer();
      if (t.dieAt === 'header') dieAfterHeader(group, t.C as number);
      if (t.dieAt === 'forward') l.forward(input(), t.shape as number[]);
      process.kill(process.pid, 'SIGKILL');
      return ev;
    }
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

// A rank that dies between publishing its Gloo addresses and connecting to the others: it writes
// well-formed addresses (Gloo's pair address: a sockaddr_storage, then an int64 sequence number) on
// 127.0.0.2, which sorts above the others' 127.0.0.1, so they wait for it to connect, and it never does.
// It gives up when no store has answered within the group's timeout and 5 s more (rank 0 failed).
async function publishOnly(rank: number, worldSize: number, timeoutMs: number): Promise<ProbeEvent[]> {
  const t0 = Date.now();
  const blob = () => {
    const b = Buffer.alloc(136);
    b.writeUInt16LE(2, 0); // AF_INET
    b.writeUInt16BE(9, 2);
    b.set([127, 0, 0, 2], 4);
    b.writeBigInt64LE(-1n, 128);
    return b;
  };
  const value = Buffer.concat(Array.from({ length: worldSize - 1 }, blob));
  const key = Buffer.from(`node-batchnorm/${rank}`);
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
  const request = Buffer.concat([u32(1), u32(key.length), key, u32(value.length), value]); // SET (native/gloo/tcp_store.cc)
  for (;;) {
    const done = await new Promise<boolean>((resolve) => {
      const s = net.connect(Number(process.env.MASTER_PORT), process.env.MASTER_ADDR as string, () => s.write(request));
      s.once('data', () => { s.end(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (done) return [{ what: 'published', ms: Date.now() - t0 }];
    if (Date.now() - t0 > timeoutMs + 5000) return [{ what: 'no store answered', ms: Date.now() - t0 }];
    await new Promise((r) => setTimeout(r, 20));
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
    if (task.probe === 'publish-only') {
      ev = await publishOnly(Number(process.env.RANK), Number(process.env.WORLD_SIZE), Number(process.env.BN_SYNC_TIMEOUT_MS ?? 20000));
      process.send({ rank: Number(process.env.RANK), events: ev }, () => process.exit(0));
      return;
    }
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
