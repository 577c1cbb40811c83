// Garbage collection on demand for the tests that check what is kept alive or given back.
import * as v8 from 'v8';
import * as vm from 'vm';

/** V8's gc(), without starting node with --expose-gc. */
export function gcFunction(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Collect, then let Node run the finalizers it queued (they run on the event loop). */
export async function collect(): Promise<void> {
  const gc = gcFunction();
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}
