/**
 * ORT's JSON profile (Chrome trace events, one per operator run) summed by operator type, for `bench/run.ts --profile`.
 *
 * Each `run()` of a session is one "model_run" event (cat "Session"); each operator run is a "<node>_kernel_time"
 * event (cat "Node") with `args.op_name` and `args.provider`. Times are microseconds.
 */
import * as fs from 'node:fs';
import { SD3Error } from '../src/core/errors.js';

export interface OpRow {
  readonly op: string;
  /** Kernel time summed over every run, seconds. */
  readonly seconds: number;
  /** Share of all kernel time. */
  readonly share: number;
  /** Operator runs per model run. */
  readonly countPerRun: number;
}

export interface ProfileSummary {
  readonly label: string;
  /** model_run events. */
  readonly runs: number;
  /** Wall time of the runs, seconds (kernels plus the executor's time between them). */
  readonly runSeconds: number;
  /** Kernel time, seconds. */
  readonly kernelSeconds: number;
  readonly ops: readonly OpRow[];
}

interface TraceEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly ts?: number;
  readonly dur?: number;
  readonly args?: { readonly op_name?: string; readonly provider?: string };
}

/**
 * Sums a profile's kernel time by operator type (and provider, when not the CPU's), largest first. `skipRuns`
 * leaves out the first runs (e.g. a warm-up at another shape) and the operators that ran inside them.
 */
export function summarizeProfile(events: readonly TraceEvent[], label: string, skipRuns = 0): ProfileSummary {
  if (!Array.isArray(events)) throw new SD3Error(`${label}: an ORT profile is a JSON array of trace events`);
  const allRuns = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((x, y) => (x.ts ?? 0) - (y.ts ?? 0));
  const skipped = allRuns.slice(0, skipRuns);
  const kept = allRuns.slice(skipRuns);
  const runs = kept.length;
  const runUs = kept.reduce((t, e) => t + (e.dur ?? 0), 0);
  const inSkipped = (e: TraceEvent) => skipped.some((r) => (e.ts ?? 0) >= (r.ts ?? 0) && (e.ts ?? 0) <= (r.ts ?? 0) + (r.dur ?? 0));
  const byOp = new Map<string, { us: number; count: number }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || (skipped.length && inSkipped(e))) continue;
    const provider = e.args?.provider;
    const op = `${e.args?.op_name ?? 'unknown'}${provider && provider !== 'CPUExecutionProvider' ? ` (${provider.replace('ExecutionProvider', '')})` : ''}`;
    const row = byOp.get(op) ?? { us: 0, count: 0 };
    row.us += e.dur ?? 0;
    row.count++;
    byOp.set(op, row);
  }
  const kernelUs = [...byOp.values()].reduce((a, r) => a + r.us, 0);
  const ops = [...byOp.entries()]
    .map(([op, r]) => ({ op, seconds: r.us / 1e6, share: kernelUs > 0 ? r.us / kernelUs : 0, countPerRun: r.count / Math.max(runs, 1) }))
    .sort((a, b) => b.seconds - a.seconds);
  return { label, runs, runSeconds: runUs / 1e6, kernelSeconds: kernelUs / 1e6, ops };
}

/** Reads and summarises one profile file. */
export function summarizeProfileFile(file: string, label: string, skipRuns = 0): ProfileSummary {
  let events: TraceEvent[];
  try {
    events = JSON.parse(fs.readFileSync(file, 'utf8')) as TraceEvent[];
  } catch (e) {
    throw new SD3Error(`cannot read the ORT profile ${file}: ${(e as Error).message}`, { cause: e });
  }
  return summarizeProfile(events, label, skipRuns);
}

/** A Markdown table of the top operator types (the rest folded into one row). */
export function profileTable(s: ProfileSummary, top = 12): string {
  const lines = [
    `${s.label}: ${s.runs} run(s), ${s.runSeconds.toFixed(2)} s in runs, ${s.kernelSeconds.toFixed(2)} s in kernels (${(100 * s.kernelSeconds / Math.max(s.runSeconds, 1e-9)).toFixed(1)}%)`,
    '',
    '| op type | s per run | share of kernel time | count per run |',
    '|---|---|---|---|',
  ];
  const perRun = (x: number) => (x / Math.max(s.runs, 1)).toFixed(3);
  for (const r of s.ops.slice(0, top)) lines.push(`| ${r.op} | ${perRun(r.seconds)} | ${(100 * r.share).toFixed(1)}% | ${+r.countPerRun.toFixed(1)} |`);
  const rest = s.ops.slice(top);
  if (rest.length) {
    const sec = rest.reduce((a, r) => a + r.seconds, 0);
    const share = rest.reduce((a, r) => a + r.share, 0);
    const count = rest.reduce((a, r) => a + r.countPerRun, 0);
    lines.push(`| ${rest.length} other types | ${perRun(sec)} | ${(100 * share).toFixed(1)}% | ${+count.toFixed(1)} |`);
  }
  return lines.join('\n');
}
