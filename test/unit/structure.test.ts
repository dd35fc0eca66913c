/**
 * Structure and small contracts from the code review: no import cycle between source folders (M13), the task
 * defaults are read (M15), the one default-size rule (L4/M8), a late failed load cannot wipe a newer one
 * (L11), the backbone's addNoise step (L6), and an abort after the last step returns nothing (H2).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AbortError, SD3Error } from '../../src/core/errors.js';
import { Lazy } from '../../src/pipelines/backbone.js';
import { defaultImageShape } from '../../src/presets/index.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { addNoise } from '../../src/sampler/flow-match.js';
import { describeUnexpected } from '../../src/cli/failure.js';
import { REPO } from '../helpers/cli.js';
import { TINY_OPTIONS, parameters } from '../helpers/tiny.js';

/** Folder -> folders its files import (relative imports, `import type` included). */
function folderGraph(root: string): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      if (fs.statSync(file).isDirectory()) { walk(file); continue; }
      if (!file.endsWith('.ts')) continue;
      const from = path.relative(root, dir) || '.';
      for (const m of fs.readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/gms)) {
        const to = path.relative(root, path.dirname(path.resolve(dir, m[1]!))) || '.';
        if (to === from) continue;
        if (!graph.has(from)) graph.set(from, new Set());
        graph.get(from)!.add(to);
      }
    }
  };
  walk(root);
  return graph;
}

function findCycle(graph: Map<string, Set<string>>): string[] | undefined {
  const done = new Set<string>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    const at = stack.indexOf(n);
    if (at >= 0) return [...stack.slice(at), n];
    if (done.has(n)) return undefined;
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    stack.pop();
    done.add(n);
    return undefined;
  };
  for (const n of graph.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

describe('structure', () => {
  it('has no import cycle between the folders of src/ (data flows one way)', () => {
    const graph = folderGraph(path.join(REPO, 'src'));
    assert.ok(graph.get('presets')?.has('pipelines'), 'the graph reader found no presets -> pipelines import: it is broken');
    assert.equal(findCycle(graph)?.join(' -> '), undefined);
  });

  it('finds a cycle when there is one (the checker itself)', () => {
    assert.deepEqual(findCycle(new Map([['a', new Set(['b'])], ['b', new Set(['c'])], ['c', new Set(['a'])]])), ['a', 'b', 'c', 'a']);
  });
});

describe('the default image size (one rule)', () => {
  it('is 1024 (256 for tiny-random), or the input image rounded to 16 and scaled down to fit the position grid', () => {
    assert.deepEqual(defaultImageShape('stable_diffusion_3_medium'), { width: 1024, height: 1024 });
    assert.deepEqual(defaultImageShape('tiny-random'), { width: 256, height: 256 });
    assert.deepEqual(defaultImageShape('x.safetensors', { width: 641, height: 479 }), { width: 640, height: 480 });
    assert.deepEqual(defaultImageShape('x.safetensors', { width: 5, height: 3 }), { width: 16, height: 16 });
    // A 12-megapixel phone photo: 4032x3024 exceeds SD3 Medium's 3072 grid; the aspect ratio is kept.
    assert.deepEqual(defaultImageShape('x.safetensors', { width: 4032, height: 3024 }), { width: 3072, height: 2304 });
    assert.deepEqual(defaultImageShape('x.safetensors', { width: 1000, height: 60000 }), { width: 48, height: 3072 });
    assert.deepEqual(defaultImageShape('tiny-random', { width: 4096, height: 2048 }), { width: 1024, height: 512 });
  });
});

describe('Lazy (a model loaded on first use)', () => {
  it('retries after a failed load, and a late failure does not wipe a newer load', async () => {
    let n = 0;
    let failFirst: (e: Error) => void = () => {};
    type Model = { id: number; dispose(): Promise<void> };
    const made: Model[] = [];
    const lazy = new Lazy<Model>(() => {
      n++;
      if (n === 1) return new Promise<Model>((_, reject) => { failFirst = reject; });
      const v = { id: n, dispose: async () => {} };
      made.push(v);
      return Promise.resolve(v);
    });
    const first = lazy.get();
    const released = lazy.release(); // forgets the pending first load (and waits for it)
    const second = await lazy.get();
    failFirst(new Error('late failure of the first load'));
    await assert.rejects(first, /late failure/);
    await assert.rejects(released, /late failure/);
    await new Promise((r) => setImmediate(r));
    assert.equal(lazy.loaded, true, 'the late failure of the first load cleared the second');
    assert.equal(await lazy.get(), second);
    assert.equal(n, 2);
  });
});

describe('tasks', () => {
  let t2i: TextToImage;
  before(async () => { t2i = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS); });
  after(async () => { await t2i.dispose(); });

  it("reads its class's defaults (a subclass's guidance and steps are used)", async () => {
    class Quick extends TextToImage {
      static override readonly defaults = { numSteps: 2, guidanceScale: 1.0 };
    }
    const quick = new Quick(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    let steps = 0;
    const p = parameters(await quick.generate('a', { seed: 1, onStep: () => { steps++; } }));
    assert.deepEqual([p.numSteps, p.guidanceScale, steps], [2, 1, 2]);
  });

  it('refuses a megabyte prompt with an SD3Error naming the limit, quickly', async () => {
    const started = performance.now();
    await assert.rejects(t2i.generate('x'.repeat(1 << 20), { numSteps: 1, seed: 1 }),
      (e: unknown) => e instanceof SD3Error && /the prompt is 1048576 characters long; at most 10000 are accepted \(MAX_PROMPT_LENGTH\)/.test(e.message));
    assert.ok(performance.now() - started < 10_000, 'the refusal took as long as tokenizing');
  });

  it('backbone.addNoise is sigma * noise + (1 - sigma) * latent', () => {
    const latent = Float32Array.from([1, -2, 0.5]);
    const noise = Float32Array.from([0.25, 4, -1]);
    assert.deepEqual([...t2i.backbone.addNoise(latent, noise, 0.25)], [...addNoise(latent, noise, 0.25)]);
    assert.deepEqual([...t2i.backbone.addNoise(latent, noise, 0.25)], [0.8125, -0.5, 0.125]);
  });

  it('an abort during the last step ends in an AbortError, not images (H2)', async () => {
    const controller = new AbortController();
    await assert.rejects(
      t2i.generate('a', { numSteps: 3, seed: 1, signal: controller.signal, onStep: (s) => { if (s.step === s.total) controller.abort(); } }),
      (e: unknown) => e instanceof AbortError,
    );
  });
});

describe('the command\'s wording of failures that are not SD3Errors (M1)', () => {
  it('says an operating-system or Node error in one line, without a stack', () => {
    const busy = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:7860'), { code: 'EADDRINUSE' });
    assert.equal(describeUnexpected(busy), 'listen EADDRINUSE: address already in use 127.0.0.1:7860');
    const range = new RangeError('Invalid typed array length: 100000000001');
    assert.equal(describeUnexpected(range), 'a value is out of range: Invalid typed array length: 100000000001');
  });

  it('calls anything else a bug, with the stack only under SD3_DEBUG=1', () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'x')");
    const saved = process.env.SD3_DEBUG;
    try {
      delete process.env.SD3_DEBUG;
      const line = describeUnexpected(bug);
      assert.match(line, /^unexpected error \(a bug: please report it; SD3_DEBUG=1 shows where\): TypeError: Cannot read/);
      assert.doesNotMatch(line, /\n\s+at /);
      process.env.SD3_DEBUG = '1';
      assert.match(describeUnexpected(bug), /\n\s+at /);
    } finally {
      if (saved === undefined) delete process.env.SD3_DEBUG; else process.env.SD3_DEBUG = saved;
    }
  });
});
