// The quickstart's "calculations": small but real numerical work, run as separate processes
// by the queue. Each is a Node one-liner program passed as argv (no shell, nothing to quote):
// the Lennard-Jones energy per atom of an fcc crystal at a given lattice constant. Each reads
// and writes files in its own job directory only: the queue brings outputs home and hands them
// to the next step (`fromJob` inputs), so the steps may run on different machines.

/** Writes params.json: three lattice constants to try (reduced units). */
export const PREPARE = `
const fs = require('node:fs');
const lattices = [1.50, 1.55, 1.60];
fs.writeFileSync('params.json', JSON.stringify({ lattices, cutoff: 3.0 }));
console.log('prepared', lattices.length, 'structures');
`;

/**
 * Energy per atom of an fcc Lennard-Jones crystal (epsilon = sigma = 1) at lattice constant
 * params.lattices[index]: sums 4(r^-12 - r^-6) over every neighbour within the cutoff.
 */
export const CALCULATE = `
const fs = require('node:fs');
const index = Number(process.argv[1]);
const { lattices, cutoff } = JSON.parse(fs.readFileSync('params.json', 'utf8'));
const a = lattices[index];
const basis = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]];
const n = Math.ceil(cutoff / a) + 1;
let energy = 0, neighbours = 0;
for (let i = -n; i <= n; i++) for (let j = -n; j <= n; j++) for (let k = -n; k <= n; k++)
  for (const [bx, by, bz] of basis) {
    const x = (i + bx) * a, y = (j + by) * a, z = (k + bz) * a;
    const r2 = x * x + y * y + z * z;
    if (r2 === 0 || r2 > cutoff * cutoff) continue;
    const s6 = 1 / (r2 * r2 * r2);
    energy += 2 * (s6 * s6 - s6); // half of 4(...): each pair is shared by two atoms
    neighbours++;
  }
fs.writeFileSync('result.json', JSON.stringify({ a, energy, neighbours })); // the job's result
console.log('a =', a, 'E/atom =', energy.toFixed(4));
`;

/** Reads the three results (staged as calc-<i>.json) and writes the lowest-energy one. */
export const AGGREGATE = `
const fs = require('node:fs');
const results = [0, 1, 2].map((i) => JSON.parse(fs.readFileSync('calc-' + i + '.json', 'utf8')));
const best = results.reduce((x, y) => (y.energy < x.energy ? y : x));
fs.writeFileSync('result.json', JSON.stringify({ results, best }));
console.log('best lattice constant', best.a);
`;
