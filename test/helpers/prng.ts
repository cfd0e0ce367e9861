// The workload's seeded PRNG, shared by the property and fuzz tests so that a failing seed replays.
export { prng } from '../../src/drill/prng.js';
