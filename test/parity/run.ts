/**
 * Data-driven parity runner: checks every fixture folder under test/fixtures (or $SD3_FIXTURES) against the
 * golden tensors, one line per check with its error relative to the budget, ending with "N passed, N failed".
 *
 *   npm run test:parity                       every folder; a component not implemented yet fails
 *   npm run test:parity -- --implemented-only only the components in components.ts (what `npm test` runs)
 *   npm run test:parity -- mmdit vae          only these folders
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHECKERS, COMPONENTS, type Component } from './components.js';
import type { Check } from './lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(process.env.SD3_FIXTURES ?? path.join(here, '..', 'fixtures'));
const args = process.argv.slice(2);
const implementedOnly = args.includes('--implemented-only');
const only = args.filter((a) => !a.startsWith('--'));

/** What component a folder holds: its config's `component`, else recognised by its files, else its name. */
function componentOf(dir: string): string {
  const cfg = path.join(dir, 'config.json');
  if (fs.existsSync(cfg)) {
    try {
      const c = JSON.parse(fs.readFileSync(cfg, 'utf8'));
      if (typeof c.component === 'string') return c.component;
    } catch { /* reported below by the checker */ }
  }
  if (fs.existsSync(path.join(dir, 'model_index.json'))) return 'diffusers_layout';
  if (fs.existsSync(path.join(dir, 'clip_bpe_cases.json'))) return 'tokenizer';
  return path.basename(dir);
}

async function main(): Promise<number> {
  if (!fs.existsSync(root)) {
    console.error(`fixtures folder ${root} does not exist`);
    return 2;
  }
  const folders = fs.readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && (only.length === 0 || only.includes(d.name)))
    .map((d) => d.name)
    .sort();
  let passed = 0;
  let failed = 0;
  let known = 0;
  for (const name of folders) {
    const dir = path.join(root, name);
    const component = componentOf(dir);
    const checker = (COMPONENTS as readonly string[]).includes(component) ? CHECKERS[component as Component] : undefined;
    if (!checker) {
      if (implementedOnly) continue;
      console.log(`FAIL ${name} (${component}): component not implemented yet`);
      failed++;
      continue;
    }
    let checks: Check[];
    const t0 = performance.now();
    try {
      checks = await checker(dir, root);
    } catch (e) {
      console.log(`FAIL ${name}: ${(e as Error).stack ?? e}`);
      failed++;
      continue;
    }
    if (checks.length === 0) {
      console.log(`FAIL ${name}: no cases checked`);
      failed++;
      continue;
    }
    for (const c of checks) {
      const r = Number.isFinite(c.ratio) ? `${c.ratio.toFixed(3)} of budget` : '';
      const mark = !c.ok ? 'FAIL' : c.known ? 'known' : 'ok  ';
      console.log(`${mark} ${name}/${c.name}  ${r}  ${c.detail}${c.known ? ` (known divergence: ${c.known})` : ''}`);
      if (!c.ok) failed++; else if (c.known) known++; else passed++;
    }
    console.log(`# ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  console.log(`${passed} passed, ${failed} failed${known ? `, ${known} known divergences (not counted as passes)` : ''}`);
  return failed > 0 || passed === 0 ? 1 : 0;
}

process.exitCode = await main();
