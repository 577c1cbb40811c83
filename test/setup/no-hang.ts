// Mocha global teardown: the suite must end by itself. Mocha (no --exit) waits for the event loop to
// drain, so a test that leaves a child process, socket or timer alive would hang `npm test` after
// its summary. Past a grace period this names what is still alive and fails the run instead; the
// timer is unref'd, so a suite that drains exits as before.
import { ChildProcess } from 'child_process';

/** Seconds the process may take to drain after the last test. */
const GRACE_SECONDS = 20;

function describeHandle(h: unknown): string {
  if (h instanceof ChildProcess) return `child process ${h.pid} (${h.spawnargs.join(' ')})`;
  const name = (h as { constructor?: { name?: string } })?.constructor?.name ?? typeof h;
  return name;
}

export function mochaGlobalTeardown(): void {
  setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
    const own = new Set<unknown>([process.stdin, process.stdout, process.stderr]);
    const alive = handles.filter((h) => !own.has(h)).map(describeHandle);
    process.stderr.write(
      `\nnpm test: the process did not exit ${GRACE_SECONDS} s after the last test; still alive: ` +
        `${alive.join(', ') || 'none listed'}; resources: ${process.getActiveResourcesInfo().join(', ')}\n`,
    );
    // Mocha sets the exit code to its failure count in an 'exit' listener of its own: this one,
    // added later, runs after it.
    process.on('exit', () => {
      process.exitCode = 1;
    });
    process.exit(1);
  }, GRACE_SECONDS * 1000).unref();
}
