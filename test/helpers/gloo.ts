// Whether this build has the Gloo backend of SyncBatchNorm (batchnorm_gloo.node), which is built
// only where libgloo-dev was installed before `npm install`. Without it the tests that need it are
// listed as pending under a title that says so and how to install it; .ci/run, which installs
// libgloo-dev first, fails when that title appears, so CI never passes without running them.
import * as fs from 'fs';
import * as path from 'path';

/** The phrase .ci/run looks for in the suite's output. */
export const GLOO_PENDING_MARK = 'pending: the Gloo backend is not built here';

const ADDON = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'batchnorm_gloo.node');

/** A describe-title suffix that says why the Gloo tests are pending, or '' when the backend is built. */
export function glooPendingNote(): string {
  if (fs.existsSync(ADDON)) return '';
  return ` (${GLOO_PENDING_MARK}: apt-get install -y libgloo-dev iproute2, then BATCHNORM_BUILD_FROM_SOURCE=1 npm install)`;
}

/** `it` where the Gloo backend is built, `it.skip` (pending) where it is not. */
export function itWithGloo(): Mocha.TestFunction | Mocha.PendingTestFunction {
  return glooPendingNote() ? it.skip : it;
}
