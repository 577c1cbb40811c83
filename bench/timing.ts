// Timing: warm-up, then repetitions until a time budget is spent (and at least minReps were
// made); the median and the minimum of the per-call times. Wall clock (process.hrtime), so a
// call's time includes everything it does: validation, N-API, allocation, page faults, GC it
// triggers.

export interface Timing {
  /** seconds */
  median: number;
  min: number;
  reps: number;
  /** Minor page faults per measured call (whole process; absent in timings made before it existed). */
  faults?: number;
}

export interface TimingOptions {
  /** Seconds of measured repetitions (after warm-up). */
  seconds: number;
  minReps: number;
  maxReps?: number;
  /** Warm-up: at least one call and this many seconds. */
  warmupSeconds?: number;
}

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

function summarize(times: number[], faults?: number): Timing {
  const t = times.slice().sort((a, b) => a - b);
  const k = t.length;
  const median = k % 2 ? t[(k - 1) / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
  return faults === undefined ? { median, min: t[0], reps: k } : { median, min: t[0], reps: k, faults: faults / k };
}

// A fresh output's cost depends on whether malloc hands back memory it recycled (no page
// faults) or memory the heap just grew into (a fault per 4 KiB page), which follows from when
// V8's ArrayBuffer sweeper frees the dead outputs relative to the next allocation: the same code
// can land in either state from one run to the next. Counting the faults shows which one a
// case measured.
function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

export function timeSync(fn: () => void, o: TimingOptions): Timing {
  const maxReps = o.maxReps ?? 100000;
  const w0 = now();
  do fn(); while (now() - w0 < (o.warmupSeconds ?? o.seconds * 0.1));
  const times: number[] = [];
  const f0 = minorFaults();
  const t0 = now();
  while (times.length < o.minReps || (now() - t0 < o.seconds && times.length < maxReps)) {
    const a = now();
    fn();
    times.push(now() - a);
  }
  return summarize(times, minorFaults() - f0);
}

export async function timeAsync(fn: () => Promise<unknown>, o: TimingOptions): Promise<Timing> {
  const maxReps = o.maxReps ?? 100000;
  const w0 = now();
  do await fn(); while (now() - w0 < (o.warmupSeconds ?? o.seconds * 0.1));
  const times: number[] = [];
  const t0 = now();
  while (times.length < o.minReps || (now() - t0 < o.seconds && times.length < maxReps)) {
    const a = now();
    await fn();
    times.push(now() - a);
  }
  return summarize(times);
}

/** Per-call time of a cheap call: each sample is a batch of `batch` calls, divided by batch. */
export function timePerCall(fn: () => void, batch: number, o: TimingOptions): Timing {
  const t = timeSync(() => { for (let i = 0; i < batch; i++) fn(); }, o);
  return { median: t.median / batch, min: t.min / batch, reps: t.reps * batch };
}

export async function timePerCallAsync(fn: () => Promise<unknown>, batch: number, o: TimingOptions): Promise<Timing> {
  const t = await timeAsync(async () => { for (let i = 0; i < batch; i++) await fn(); }, o);
  return { median: t.median / batch, min: t.min / batch, reps: t.reps * batch };
}
