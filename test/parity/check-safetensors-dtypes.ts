import * as path from 'node:path';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { toFloat32 } from '../../src/core/tensor.js';
import { type Check, exact, readJson } from './lib.js';

function decodeExpected(v: unknown): number {
  if (v === 'nan') return NaN;
  if (v === 'inf') return Infinity;
  if (v === '-inf') return -Infinity;
  if (v === '-0.0') return -0;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v as number;
}

function same(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

export async function checkSafetensorsDtypes(dir: string): Promise<Check[]> {
  const cfg = readJson(path.join(dir, 'config.json'));
  const file = SafetensorsFile.open(path.join(dir, 'dtypes.safetensors'));
  const checks: Check[] = [];
  try {
    checks.push(exact('metadata', JSON.stringify(file.metadata) === JSON.stringify(cfg.metadata), JSON.stringify(file.metadata)));
    for (const [name, h] of Object.entries<any>(cfg.header)) {
      const t = file.read(name);
      const shapeOk = t.shape.join(',') === (h.shape as number[]).join(',');
      const exp = cfg.expected[name];
      let ok = shapeOk;
      let detail = shapeOk ? '' : `shape [${t.shape}] != [${h.shape}]`;
      if (exp && typeof exp === 'object' && !Array.isArray(exp)) {
        ok &&= t.data.length === 0;
      } else {
        const flat: unknown[] = Array.isArray(exp) ? (exp as unknown[]).flat(8) : [exp];
        const got: number[] = t.dtype === 'int64'
          ? [...(t.data as BigInt64Array)].map(Number)
          : [...toFloat32(t).data].map((x, i) => (t.dtype === 'float64' ? (t.data as Float64Array)[i]! : x));
        if (t.dtype === 'int32' || t.dtype === 'uint8' || t.dtype === 'bool') got.splice(0, got.length, ...Array.from(t.data as ArrayLike<number>, Number));
        for (let i = 0; i < flat.length; i++) {
          if (!same(got[i]!, decodeExpected(flat[i]))) { ok = false; detail = `element ${i}: ${got[i]} != ${String(flat[i])}`; break; }
        }
        if (got.length !== flat.length) { ok = false; detail = `${got.length} values, expected ${flat.length}`; }
      }
      if (name === 'bf16' && cfg.bf16_bits_hex) {
        const bits = [...(t.data as Uint16Array)].map((b) => '0x' + b.toString(16).padStart(4, '0'));
        if (bits.join() !== (cfg.bf16_bits_hex as string[]).join()) { ok = false; detail = `bits ${bits.join(' ')}`; }
      }
      checks.push(exact(`${name} (${h.dtype})`, ok, detail));
    }
  } finally {
    file.close();
  }
  return checks;
}
