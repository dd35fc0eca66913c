/**
 * The one door to onnxruntime-node: no other module imports it.
 *
 * Creates sessions from model bytes built in TypeScript (weights as external data inside the checkpoint's
 * folder), runs them with our own Tensor type at the boundary, caches and disposes them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { SD3Error } from '../core/errors.js';
import { type DType, type Tensor, tensor } from '../core/tensor.js';
import { type BuiltModel, GraphBuilder } from '../onnx/builder.js';

/**
 * Where a model runs. 'cpu' is ORT's CPU provider; 'webgpu' is the WebGPU provider bundled in onnxruntime-node
 * (Dawn over Vulkan on Linux, D3D12 on Windows, Metal on macOS), with operators it lacks falling back to the CPU.
 */
export type Device = 'cpu' | 'webgpu';
/** A device, or 'auto': the GPU when a WebGPU adapter is found in this process, else the CPU. */
export type DeviceChoice = Device | 'auto';
export const DEVICES: readonly DeviceChoice[] = ['cpu', 'webgpu', 'auto'];

/** What every model's load options share: the runtime's placement and threads. */
export interface RuntimeOptions {
  /** Threads for one CPU operator (default: the number of cores). */
  readonly threads?: number;
  /** Where to run (default: `defaultDevice()`, i.e. $SD3_DEVICE or 'cpu'). */
  readonly device?: DeviceChoice;
  /**
   * GPU devices: how freed GPU buffers are reused (ORT's WebGPU storageBufferCacheMode). Default 'simple' (reuse
   * at the exact same size), measured on an H100 at 1024²: VAE decode peak 32.6 GB and 1.42 s, against 56.0 GB
   * and 1.73 s with ORT's default 'bucket' (its size classes stop below the VAE's tensors, which are then never
   * reused within a run); MMDiT step peak 9.9 GB against 16.5 GB, and 'disabled' 34.6 GB.
   */
  readonly gpuBufferCache?: 'disabled' | 'lazyRelease' | 'simple' | 'bucket';
}

/** The runtime part of a model's load options. */
export function runtimeOptions(o: RuntimeOptions): RuntimeOptions {
  return {
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.device ? { device: o.device } : {}),
    ...(o.gpuBufferCache ? { gpuBufferCache: o.gpuBufferCache } : {}),
  };
}

/** Checks a device name from user input; throws an SD3Error naming it and the choices. */
export function parseDevice(name: string, what = 'device'): DeviceChoice {
  if ((DEVICES as readonly string[]).includes(name)) return name as DeviceChoice;
  throw new SD3Error(`${what} must be one of ${DEVICES.join(', ')}; got ${JSON.stringify(name)}`);
}

/** The device used when none is given: $SD3_DEVICE when set (e.g. to run the parity suite on a GPU), else 'cpu'. */
export function defaultDevice(env: NodeJS.ProcessEnv = process.env): DeviceChoice {
  const v = env.SD3_DEVICE;
  return v === undefined || v === '' ? 'cpu' : parseDevice(v, 'SD3_DEVICE');
}

let webgpuProbe: Promise<boolean> | undefined;

/** Whether ORT's WebGPU provider finds a GPU adapter here (asked once per process with a one-node model). */
export function webgpuAvailable(): Promise<boolean> {
  webgpuProbe ??= (async () => {
    const g = new GraphBuilder('probe');
    g.output(g.add(g.input('x', 'float32', [1]), g.input('y', 'float32', [1])), 'z');
    try {
      const s = await ort.InferenceSession.create(g.build().bytes, { executionProviders: [{ name: 'webgpu' }] });
      await s.release();
      return true;
    } catch {
      return false;
    }
  })();
  return webgpuProbe;
}

let float16Probe: Promise<boolean> | undefined;

/**
 * Whether the WebGPU adapter here computes in float16 (WebGPU's optional `shader-f16` feature): a one-node float16
 * model is run with no CPU fallback allowed, and its answer checked. Asked once per process.
 */
export function webgpuFloat16Available(): Promise<boolean> {
  float16Probe ??= (async () => {
    if (!(await webgpuAvailable())) return false;
    const g = new GraphBuilder('probe-f16');
    g.output(g.add(g.input('x', 'float16', [2]), g.floats([0.5, 1.5], [2], 'float16')), 'z', 'float16');
    try {
      const s = await ort.InferenceSession.create(g.build().bytes, {
        executionProviders: [{ name: 'webgpu' }], extra: { session: { disable_cpu_ep_fallback: '1' } },
      });
      const z = await s.run({ x: new ort.Tensor('float16', new Uint16Array([0x3c00, 0x4000]), [2]) }); // [1, 2]
      await s.release();
      const out = z.z!.data as Uint16Array;
      return out[0] === 0x3e00 && out[1] === 0x4300; // [1.5, 3.5]
    } catch {
      return false;
    }
  })();
  return float16Probe;
}

/**
 * One step of the GPU-resident output probe (bench/gpu/probe-io.ts, which runs each step in its own process): a
 * one-node WebGPU model with `preferredOutputLocation: 'gpu-buffer'`; 'output' answers the output's location,
 * 'download' its values read back, 'feed' the values of a second run fed that output. Not used by the product,
 * which reads every output to the host (see BENCHMARKS.md "float16 on WebGPU").
 */
export async function webgpuOutputProbe(step: 'output' | 'download' | 'feed'): Promise<string> {
  const g = new GraphBuilder('io-probe');
  g.output(g.add(g.input('x', 'float32', [4]), g.scalar(1)), 'y');
  const s = await ort.InferenceSession.create(g.build().bytes, { executionProviders: [{ name: 'webgpu' }], preferredOutputLocation: 'gpu-buffer' });
  const y = (await s.run({ x: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [4]) })).y!;
  if (step === 'output') return y.location;
  const out = step === 'download' ? y : (await s.run({ x: y })).y!;
  return Array.from((await out.getData()) as Float32Array).join(',');
}

/** The device a choice stands for here ('auto' probes for a GPU once; `probe` replaces the probe in tests). */
export async function resolveDevice(choice: DeviceChoice = defaultDevice(), probe: () => Promise<boolean> = webgpuAvailable): Promise<Device> {
  if (choice !== 'auto') return choice;
  return (await probe()) ? 'webgpu' : 'cpu';
}

export interface SessionOptions extends RuntimeOptions {
  /**
   * Write ORT's JSON profile of this session: ORT names the file `<prefix>_<date>_<time>.json` and writes it when
   * profiling ends (`endProfiling()`, or release). Sessions created while `profileSessionsInto` is on get one.
   */
  readonly profilePrefix?: string;
  /** Keep worker threads spinning between ops (faster on an otherwise idle machine). Default false; CPU only. */
  readonly spin?: boolean;
  /** Memory-map weights instead of prepacking them (lower memory, somewhat slower). Default false. */
  readonly mmapWeights?: boolean;
  /**
   * Keep half-precision weights as they are in memory and widen them to float32 as each operator runs, instead
   * of folding the casts at load (half the weight memory, the same numbers, some time per run). The session
   * then runs unoptimised (ORT's optimiser would fold the casts) and without the CPU arena (which would keep
   * every widened weight). 'on-cpu': only when the session runs on the CPU.
   */
  readonly halfWeights?: boolean | 'on-cpu';
  /** Graph optimisation level; 'basic' folds the in-graph casts of half-precision weights. Default 'all'. */
  readonly optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * The model computes in float16: on 'webgpu' the adapter must have `shader-f16` (checked, with a clear error).
   * The CPU runs it too, but ORT's CPU provider has no float16 kernels for the models' main operators (Gemm,
   * LayerNorm, Gelu, attention, Conv, InstanceNorm): its optimiser casts around them and merges the casts, so
   * there the graph computes in float32 with float16's rounding only in the weights and at the graph's own
   * casts: good for checking the graph, no gain.
   */
  readonly float16?: boolean;
}

/**
 * Operator types that `$SD3_WEBGPU_HOST_OPS` (comma-separated) sends to the CPU in every WebGPU session. For
 * software Vulkan (Mesa's lavapipe), whose subgroups break ORT's WebGPU FlashAttention kernel (see
 * scripts/webgpu-lavapipe.sh); never needed on a real GPU.
 */
export function webgpuHostOps(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.SD3_WEBGPU_HOST_OPS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

/** onnxruntime-node's version. */
export function runtimeVersion(): string {
  return ort.env.versions.node ?? ort.env.versions.common;
}

export function defaultThreads(): number {
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, n);
}

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: 'float32', float16: 'float16', float64: 'float64', int8: 'int8', uint8: 'uint8', int16: 'int16',
  int32: 'int32', int64: 'int64', bool: 'bool',
};

function toOrt(t: Tensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype];
  if (!type) throw new SD3Error(`the runtime cannot take ${t.dtype} tensors`);
  return new ort.Tensor(type, t.data as never, [...t.shape]);
}

/** onnxruntime-node takes config entries as nested objects ('session.x' = { session: { x } }) and joins them back. */
function nestConfig(config: Record<string, string>): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [key, value] of Object.entries(config)) {
    const dot = key.indexOf('.');
    (out[key.slice(0, dot)] ??= {})[key.slice(dot + 1)] = value;
  }
  return out;
}

/** What to try when a GPU run fails for lack of memory (the untiled VAE decode is the largest user). */
export function gpuMemoryHint(message: string): string {
  return /out of memory|\boom\b|allocat/i.test(message)
    ? ' (the GPU ran out of memory: decode large images in tiles with vaeTile / --vae-tile 64, or set lowMemory / --low-memory so the MMDiT is released before decoding)'
    : '';
}

/** ORT's provider list for a device; operators the GPU provider lacks fall back to the CPU provider. */
export function executionProviders(device: Device, hostNodes: readonly string[] = [], cache?: RuntimeOptions['gpuBufferCache']): ort.InferenceSession.ExecutionProviderConfig[] {
  switch (device) {
    case 'cpu': return ['cpu'];
    // 'cpu' second: ORT places there what WebGPU cannot run, and the nodes the graph marked host-only.
    case 'webgpu': return [{
      name: 'webgpu',
      ...(hostNodes.length ? { forceCpuNodeNames: hostNodes } : {}),
      storageBufferCacheMode: cache ?? 'simple',
    }, 'cpu'];
  }
}

/** The nodes of a model that run on the CPU on this device: those it marked, and those of `webgpuHostOps()`. */
function hostNodesOf(model: BuiltModel, device: Device): readonly string[] {
  if (device === 'cpu') return [];
  const ops = webgpuHostOps();
  return ops.length ? [...model.hostNodes, ...ops.flatMap((op) => model.nodesByOp[op] ?? [])] : model.hostNodes;
}

function fromOrt(t: ort.Tensor): Tensor {
  const dims = [...t.dims];
  switch (t.type) {
    case 'float32': return tensor('float32', dims, t.data as Float32Array);
    case 'int64': return tensor('int64', dims, t.data as BigInt64Array);
    case 'int32': return tensor('int32', dims, t.data as Int32Array);
    case 'uint8': return tensor('uint8', dims, t.data as Uint8Array);
    case 'int8': return tensor('int8', dims, t.data as Int8Array);
    case 'float16': return tensor('float16', dims, t.data as Uint16Array);
    case 'bool': return tensor('bool', dims, Uint8Array.from(t.data as Uint8Array));
    default: throw new SD3Error(`unexpected runtime output type ${t.type}`);
  }
}

/** A finished ORT profile: the session's label and the JSON file ORT wrote. */
export interface ProfileFile {
  readonly label: string;
  readonly path: string;
}

/** Process-wide profiling (benchmarks): the folder new sessions profile into, the live ones, the finished files. */
const profiling = { dir: undefined as string | undefined, count: 0, live: new Set<Session>(), done: [] as ProfileFile[] };

/**
 * From now on every session created writes ORT's profile (one event per operator run) into `dir`, which is created
 * if missing. `endProfilingAll` ends them and lists the files.
 */
export function profileSessionsInto(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  profiling.dir = dir;
}

/** Ends profiling of every live profiled session and stops profiling new ones; returns every profile written. */
export function endProfilingAll(): ProfileFile[] {
  for (const s of [...profiling.live]) s.endProfiling();
  profiling.dir = undefined;
  const out = profiling.done;
  profiling.done = [];
  return out;
}

/** The profile ORT wrote for a prefix: `<prefix>_<timestamp>.json` (its binding does not return the name). */
function profileFileFor(prefix: string): string {
  const dir = path.dirname(prefix);
  const base = `${path.basename(prefix)}_`;
  const found = fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith('.json')).sort();
  if (found.length === 0) throw new SD3Error(`the runtime wrote no profile for ${prefix} in ${dir}`);
  return path.join(dir, found[found.length - 1]!);
}

/** A loaded model. */
export class Session {
  private disposed = false;
  private profiled: string | undefined;
  private constructor(private readonly inner: ort.InferenceSession, readonly label: string, readonly device: Device, private profilePrefix?: string) {
    if (profilePrefix) profiling.live.add(this);
  }

  /** A session for a model built in TypeScript (its external-data folder and CPU-only nodes come with it). */
  static async create(label: string, model: BuiltModel, opts: SessionOptions = {}): Promise<Session> {
    const device = await resolveDevice(opts.device);
    if (opts.float16 && device === 'webgpu' && !(await webgpuFloat16Available())) {
      throw new SD3Error(`could not load model ${label} in float16: this GPU's WebGPU adapter lacks the shader-f16 feature (float16 arithmetic); use dtype 'float32'`);
    }
    const onCpu = device === 'cpu';
    const halfWeights = opts.halfWeights === 'on-cpu' ? onCpu : (opts.halfWeights ?? false);
    const config: Record<string, string> = {
      // Spinning only helps CPU operators waiting on each other; with a GPU it would just burn a core.
      'session.intra_op.allow_spinning': opts.spin && onCpu ? '1' : '0',
    };
    if (model.externalFolder) config['session.model_external_initializers_file_folder_path'] = model.externalFolder;
    if (opts.mmapWeights) config['session.disable_prepacking'] = '1';
    // A unique prefix per session, so that endProfiling can find the file ORT names after it.
    const profilePrefix = opts.profilePrefix ?? (profiling.dir
      ? path.join(profiling.dir, `${label.replace(/[^\w.-]+/g, '_')}-${process.pid}-${++profiling.count}`)
      : undefined);
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(device, hostNodesOf(model, device), opts.gpuBufferCache),
      intraOpNumThreads: opts.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      // Unoptimised keeps ORT from folding the casts of resident half-precision weights.
      graphOptimizationLevel: halfWeights ? 'disabled' : (opts.optimization ?? 'all'),
      // Without the arena, each run's widened weights are freed as soon as used rather than kept by the arena.
      enableCpuMemArena: !halfWeights,
      extra: nestConfig(config),
      ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
    };
    try {
      const inner = await ort.InferenceSession.create(model.bytes, options);
      return new Session(inner, label, device, profilePrefix);
    } catch (e) {
      const msg = (e as Error).message.trim();
      if (device !== 'cpu' && /adapter|device|webgpu|dawn|vulkan/i.test(msg)) {
        throw new SD3Error(`could not load model ${label} on device '${device}': ${msg} (no usable GPU here? use device 'cpu')`, { cause: e });
      }
      throw new SD3Error(`could not load model ${label} into the runtime: ${msg}`, { cause: e });
    }
  }

  get inputNames(): readonly string[] { return this.inner.inputNames; }
  get outputNames(): readonly string[] { return this.inner.outputNames; }

  async run(feeds: Readonly<Record<string, Tensor>>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new SD3Error(`model ${this.label} was released`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(v);
    let res: ort.InferenceSession.OnnxValueMapType;
    try {
      res = outputs ? await this.inner.run(ortFeeds, [...outputs]) : await this.inner.run(ortFeeds);
    } catch (e) {
      const msg = (e as Error).message.trim();
      throw new SD3Error(`model ${this.label} failed to run: ${msg}${this.device !== 'cpu' ? gpuMemoryHint(msg) : ''}`, { cause: e });
    }
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(res)) out[k] = fromOrt(v as ort.Tensor);
    return out;
  }

  /**
   * Ends profiling and returns the path of the JSON profile ORT wrote (later calls return the same path); throws
   * when the session was created without profiling.
   */
  endProfiling(): string {
    if (this.profiled) return this.profiled;
    const prefix = this.profilePrefix;
    if (!prefix) throw new SD3Error(`model ${this.label} was loaded without profiling (profilePrefix)`);
    if (this.disposed) throw new SD3Error(`model ${this.label} was released`);
    this.inner.endProfiling();
    this.profiled = profileFileFor(prefix);
    this.profilePrefix = undefined;
    profiling.live.delete(this);
    profiling.done.push({ label: this.label, path: this.profiled });
    return this.profiled;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    // A profiled session's file is written now, so that endProfilingAll still lists it.
    if (this.profilePrefix) this.endProfiling();
    this.disposed = true;
    await this.inner.release();
  }
}

/** Sessions cached by key: built once, reused, released together. */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<Session>>();

  get(key: string, make: () => Promise<Session>): Promise<Session> {
    let s = this.sessions.get(key);
    if (!s) {
      s = make();
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  async release(key: string): Promise<void> {
    const s = this.sessions.get(key);
    this.sessions.delete(key);
    if (s) await (await s).dispose();
  }

  async releaseAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => undefined))?.dispose();
  }
}
