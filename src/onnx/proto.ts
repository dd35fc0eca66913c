/**
 * ONNX ModelProto writer.
 *
 * Why hand-written: we only ever *write* ONNX, and only a small subset of onnx.proto (model, graph, node,
 * attribute, tensor with external data, value info). Typing that subset here, on top of
 * @bufbuild/protobuf's wire-format BinaryWriter, avoids a code-generation toolchain and a multi-thousand-line
 * generated file for messages we never touch. Field numbers follow onnx.proto (IR version 10).
 */
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/** onnx TensorProto.DataType values. */
export const OnnxDataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16, FLOAT8E4M3FN: 17, FLOAT8E5M2: 19,
} as const;
export type OnnxDataType = (typeof OnnxDataType)[keyof typeof OnnxDataType];

export type AttributeValue = number | bigint | string | Uint8Array | number[] | bigint[] | string[] | TensorProto | { float: number } | { floats: number[] };

export interface TensorProto {
  name: string;
  dataType: OnnxDataType;
  dims: readonly number[];
  /** Inline little-endian bytes. */
  rawData?: Uint8Array;
  /** External data: file name relative to the model's external-data folder, byte offset and length. */
  external?: { location: string; offset: number; length: number };
}

export interface NodeProto {
  opType: string;
  domain?: string;
  name?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, AttributeValue>>;
}

export interface ValueInfoProto {
  name: string;
  elemType: OnnxDataType;
  /** Fixed sizes as numbers, symbolic sizes as strings; undefined when the rank is unknown. */
  dims?: readonly (number | string)[];
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
}

export interface ModelProto {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producerName: string;
  graph: GraphProto;
}

// AttributeProto.AttributeType
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;
const utf8 = new TextEncoder();

function writeTensor(w: BinaryWriter, t: TensorProto): void {
  for (const d of t.dims) w.tag(1, WireType.Varint).int64(d);
  w.tag(2, WireType.Varint).int32(t.dataType);
  w.tag(8, WireType.LengthDelimited).string(t.name);
  if (t.rawData) w.tag(9, WireType.LengthDelimited).bytes(t.rawData);
  if (t.external) {
    const entries: [string, string][] = [
      ['location', t.external.location],
      ['offset', String(t.external.offset)],
      ['length', String(t.external.length)],
    ];
    for (const [k, v] of entries) {
      w.tag(13, WireType.LengthDelimited).fork();
      w.tag(1, WireType.LengthDelimited).string(k);
      w.tag(2, WireType.LengthDelimited).string(v);
      w.join();
    }
    w.tag(14, WireType.Varint).int32(1); // DataLocation.EXTERNAL
  }
}

function writeAttribute(w: BinaryWriter, name: string, v: AttributeValue): void {
  w.tag(1, WireType.LengthDelimited).string(name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}=${v}: use {float: x} for float attributes`);
    w.tag(3, WireType.Varint).int64(v).tag(20, WireType.Varint).int32(ATTR.INT);
  } else if (typeof v === 'bigint') {
    w.tag(3, WireType.Varint).int64(v).tag(20, WireType.Varint).int32(ATTR.INT);
  } else if (typeof v === 'string') {
    w.tag(4, WireType.LengthDelimited).bytes(utf8.encode(v)).tag(20, WireType.Varint).int32(ATTR.STRING);
  } else if (v instanceof Uint8Array) {
    w.tag(4, WireType.LengthDelimited).bytes(v).tag(20, WireType.Varint).int32(ATTR.STRING);
  } else if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') {
      for (const s of v as string[]) w.tag(9, WireType.LengthDelimited).bytes(utf8.encode(s));
      w.tag(20, WireType.Varint).int32(ATTR.STRINGS);
    } else {
      for (const i of v as (number | bigint)[]) w.tag(8, WireType.Varint).int64(i);
      w.tag(20, WireType.Varint).int32(ATTR.INTS);
    }
  } else if ('float' in v) {
    w.tag(2, WireType.Bit32).float(v.float).tag(20, WireType.Varint).int32(ATTR.FLOAT);
  } else if ('floats' in v) {
    for (const f of v.floats) w.tag(7, WireType.Bit32).float(f);
    w.tag(20, WireType.Varint).int32(ATTR.FLOATS);
  } else {
    w.tag(5, WireType.LengthDelimited).fork();
    writeTensor(w, v);
    w.join();
    w.tag(20, WireType.Varint).int32(ATTR.TENSOR);
  }
}

function writeNode(w: BinaryWriter, n: NodeProto): void {
  for (const i of n.inputs) w.tag(1, WireType.LengthDelimited).string(i);
  for (const o of n.outputs) w.tag(2, WireType.LengthDelimited).string(o);
  if (n.name) w.tag(3, WireType.LengthDelimited).string(n.name);
  w.tag(4, WireType.LengthDelimited).string(n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) {
    w.tag(5, WireType.LengthDelimited).fork();
    writeAttribute(w, k, v);
    w.join();
  }
  if (n.domain) w.tag(7, WireType.LengthDelimited).string(n.domain);
}

function writeValueInfo(w: BinaryWriter, v: ValueInfoProto): void {
  w.tag(1, WireType.LengthDelimited).string(v.name);
  w.tag(2, WireType.LengthDelimited).fork(); // TypeProto
  w.tag(1, WireType.LengthDelimited).fork(); // TypeProto.Tensor
  w.tag(1, WireType.Varint).int32(v.elemType);
  if (v.dims) {
    w.tag(2, WireType.LengthDelimited).fork(); // TensorShapeProto
    for (const d of v.dims) {
      w.tag(1, WireType.LengthDelimited).fork();
      if (typeof d === 'number') w.tag(1, WireType.Varint).int64(d);
      else w.tag(2, WireType.LengthDelimited).string(d);
      w.join();
    }
    w.join();
  }
  w.join().join();
}

export function encodeModel(m: ModelProto): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.Varint).int64(m.irVersion);
  w.tag(2, WireType.LengthDelimited).string(m.producerName);
  w.tag(7, WireType.LengthDelimited).fork();
  const g = m.graph;
  for (const n of g.nodes) { w.tag(1, WireType.LengthDelimited).fork(); writeNode(w, n); w.join(); }
  w.tag(2, WireType.LengthDelimited).string(g.name);
  for (const t of g.initializers) { w.tag(5, WireType.LengthDelimited).fork(); writeTensor(w, t); w.join(); }
  for (const v of g.inputs) { w.tag(11, WireType.LengthDelimited).fork(); writeValueInfo(w, v); w.join(); }
  for (const v of g.outputs) { w.tag(12, WireType.LengthDelimited).fork(); writeValueInfo(w, v); w.join(); }
  w.join();
  for (const o of m.opsets) {
    w.tag(8, WireType.LengthDelimited).fork();
    if (o.domain) w.tag(1, WireType.LengthDelimited).string(o.domain);
    w.tag(2, WireType.Varint).int64(o.version);
    w.join();
  }
  return w.finish();
}
