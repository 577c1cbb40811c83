// Smoke test of the installed package through require(). Run from a folder where
// node-batchnorm is installed (scripts/pack-smoke.sh does this); see smoke-checks.cjs.
'use strict';
const bn = require('node-batchnorm');
require('./smoke-checks.cjs').run(bn, 'require');
