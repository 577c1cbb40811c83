// Runs a script in a child Node process and expects it to end normally (no signal, exit 0) after
// printing 'alive': for the tests whose failure would be a crash of the process itself.
import { expect } from 'chai';
import { spawnSync } from 'child_process';

export function expectChildAlive(script: string): void {
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  expect(r.signal, `child killed by a signal; stderr: ${r.stderr}`).to.equal(null);
  expect(r.status, r.stderr).to.equal(0);
  expect(r.stdout).to.equal('alive');
}
