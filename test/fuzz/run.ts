/**
 * `npm run fuzz -- [--inputs N] [--seed S] [--target NAME]`: runs every fuzz target (test/fuzz/targets.ts) for N
 * inputs in all (default 1,000,000, shared by the targets' weights), printing progress, the count of inputs tried per target, the
 * time, and every finding (input, error). Exits 1 when anything was found. Run it under `nice -n 10`.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { type Finding, TARGETS, runOne } from './targets.js';

const { values } = parseArgs({ options: { inputs: { type: 'string' }, seed: { type: 'string' }, target: { type: 'string' } } });
const total = Number(values.inputs ?? 1_000_000);
const seed = Number(values.seed ?? Date.now() % 2 ** 31);
const targets = TARGETS.filter((t) => !values.target || t.name === values.target);
if (!Number.isInteger(total) || total < 1 || targets.length === 0) {
  console.error('usage: npm run fuzz -- [--inputs N] [--seed S] [--target NAME]; targets: ' + TARGETS.map((t) => t.name).join(', '));
  process.exit(2);
}
const weights = targets.reduce((s, t) => s + t.weight, 0);
console.log(`fuzz: ${total} inputs over ${targets.length} targets (${targets.map((t) => t.name).join(', ')}), seed ${seed}, node ${process.version}`);
const findings: Finding[] = [];
const t0 = performance.now();
let tried = 0;
for (const t of targets) {
  const per = Math.max(1, Math.round((total * t.weight) / weights));
  const started = performance.now();
  let n = 0;
  let slowest = 0;
  // fc.sample draws inputs from the seeded arbitrary in chunks (no shrinking: every input is run once).
  const chunk = 2000;
  for (let done = 0; done < per; done += chunk) {
    const inputs = fc.sample(t.arbitrary, { numRuns: Math.min(chunk, per - done), seed: seed + done + t.name.length * 7919 });
    for (const input of inputs) {
      const s = performance.now();
      const f = runOne(t, input);
      slowest = Math.max(slowest, performance.now() - s);
      n++;
      if (f && findings.filter((x) => x.target === t.name && x.message === f.message).length === 0) {
        findings.push(f);
        console.log(`FINDING ${f.target} [${f.kind}] ${f.message}\n  input: ${f.input}`);
      }
    }
    if ((done / chunk) % 25 === 0) process.stderr.write(`  ${t.name}: ${n}/${per}\n`);
  }
  tried += n;
  console.log(`${t.name}: ${n} inputs in ${((performance.now() - started) / 1000).toFixed(1)} s (slowest ${slowest.toFixed(0)} ms), ${findings.filter((f) => f.target === t.name).length} findings`);
}
console.log(`total: ${tried} inputs in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${findings.length} distinct findings`);
process.exitCode = findings.length ? 1 : 0;
