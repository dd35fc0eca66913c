/**
 * Cluster throughput (run: npm run bench:cluster [-- --jobs 16 --steps 8 --size 256 --threads 1]): a real
 * redis-server on a free loopback port, a thin front end (`sd3 serve --redis --no-local-worker`) and 1, then 2
 * `sd3 worker -m tiny-random` processes; the jobs are sent at once through /api/generate and the wall time
 * from the first request to the last image gives jobs per minute. Prints one line per worker count and a
 * final JSON line. Every process it starts is ended before it exits.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { startFrontEnd, startRedis, startWorkerProc, stopAll } from '../test/cluster/helpers.js';

const { values: v } = parseArgs({ options: { jobs: { type: 'string' }, steps: { type: 'string' }, size: { type: 'string' }, threads: { type: 'string' } } });
const jobs = Number(v.jobs ?? 16);
const steps = Number(v.steps ?? 8);
const size = Number(v.size ?? 256);
const threads = v.threads ?? '1';

async function generate(url: string, seed: number): Promise<void> {
  const res = await fetch(`${url}/api/generate`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'a harbour at dusk', width: size, height: size, steps, seed }),
  });
  if (res.status !== 200) throw new Error(`job ${seed}: HTTP ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
}

const results: { workers: number; jobs: number; seconds: number; jobsPerMinute: number }[] = [];
try {
  for (const n of [1, 2]) {
    const redis = await startRedis();
    const [front, ...workers] = await Promise.all([
      startFrontEnd(redis.url, ['--max-queue', String(jobs + 1)]),
      ...Array.from({ length: n }, () => startWorkerProc(redis.url, ['--threads', threads])),
    ]);
    // Warm-up: one job per worker (first-run graph set-up is not throughput).
    await Promise.all(workers.map((_, i) => generate(front!.url, 1000 + i)));
    const t0 = performance.now();
    await Promise.all(Array.from({ length: jobs }, (_, i) => generate(front!.url, i)));
    const seconds = (performance.now() - t0) / 1000;
    const r = { workers: n, jobs, seconds: Math.round(seconds * 100) / 100, jobsPerMinute: Math.round((jobs / seconds) * 60 * 10) / 10 };
    results.push(r);
    console.log(`${n} worker${n > 1 ? 's' : ''} (--threads ${threads}): ${jobs} jobs of ${size}x${size}, ${steps} steps in ${r.seconds} s = ${r.jobsPerMinute} jobs/min`);
    await stopAll();
  }
  console.log(JSON.stringify({ bench: 'cluster', model: 'tiny-random', size, steps, threads: Number(threads), cpu: cpus()[0]?.model, cores: cpus().length, results }));
} finally {
  await stopAll();
}
