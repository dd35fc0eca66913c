/** `sd3 info FILE.png`: the generation parameters stored in a PNG (A1111 infotext and our JSON record). */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { readPNGText } from '../image/image.js';
import { INFOTEXT_KEYWORD, JSON_KEYWORD, generationParameters, parseInfotext } from '../pipelines/infotext.js';
import { UsageError } from './args.js';

const HELP = `Usage: sd3 info FILE.png [--json]

Prints the generation parameters a PNG carries: the AUTOMATIC1111 infotext (PNG text "parameters", what A1111's
PNG Info and image galleries read) and sd3-ts's JSON record (PNG text "sd3-ts"), plus any other text chunks.
  --json   one JSON object: {file, infotext, parsed, parameters, text}`;

export async function runInfo(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one PNG file, got ${positionals.length} arguments (see sd3 info --help)`);
  const file = positionals[0]!;
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x89504e47) throw new UsageError(`${file} is not a PNG file`);
  const text = readPNGText(bytes);
  const infotext = text[INFOTEXT_KEYWORD];
  const parameters = generationParameters(bytes);
  const others = Object.fromEntries(Object.entries(text).filter(([k]) => k !== INFOTEXT_KEYWORD && k !== JSON_KEYWORD));
  if (v.json) {
    console.log(JSON.stringify({ file, infotext: infotext ?? null, parsed: infotext !== undefined ? parseInfotext(infotext) : null, parameters: parameters ?? null, text: others }));
    return 0;
  }
  if (infotext === undefined && parameters === undefined) {
    console.log(`${file}: no generation parameters`);
  } else {
    if (infotext !== undefined) console.log(`parameters (A1111 infotext):\n${infotext}\n`);
    if (parameters !== undefined) console.log(`sd3-ts (JSON):\n${JSON.stringify(parameters, null, 2)}\n`);
  }
  for (const [k, t] of Object.entries(others)) console.log(`${k}: ${t}`);
  return 0;
}
