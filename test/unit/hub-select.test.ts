import assert from 'node:assert/strict';
import { test } from 'node:test';
import { globToRegExp, parseWeightName, selectSD3Components, selectSingleFiles } from '../../src/hub/index.js';
import { sd3DiffusersRepo } from '../helpers/fake-hub.js';

const files = sd3DiffusersRepo().map((f) => f.path);

test('weight names: variant, index and shard roles', () => {
  const table: [string, ReturnType<typeof parseWeightName>][] = [
    ['diffusion_pytorch_model.safetensors', { variant: null, index: false, shard: false }],
    ['diffusion_pytorch_model.fp16.safetensors', { variant: 'fp16', index: false, shard: false }],
    ['model-00001-of-00002.safetensors', { variant: null, index: false, shard: true }],
    ['model.fp16-00002-of-00002.safetensors', { variant: 'fp16', index: false, shard: true }],
    ['model-00001-of-00002.fp16.safetensors', { variant: 'fp16', index: false, shard: true }],
    ['model.safetensors.index.json', { variant: null, index: true, shard: false }],
    ['model.safetensors.index.fp16.json', { variant: 'fp16', index: true, shard: false }],
    ['sd3_medium_incl_clips.safetensors', { variant: null, index: false, shard: false }],
    ['config.json', null],
    ['pytorch_model.bin', null],
    ['model.ckpt', null],
  ];
  for (const [name, want] of table) assert.deepEqual(parseWeightName(name), want, name);
});

test('SD3 diffusers selection without T5 prefers fp16 variants and skips everything else', () => {
  const picked = selectSD3Components(files, { t5: false });
  assert.deepEqual(picked.filter((f) => f.startsWith('text_encoder')), [
    'text_encoder/config.json',
    'text_encoder/model.fp16.safetensors',
    'text_encoder_2/config.json',
    'text_encoder_2/model.fp16.safetensors',
  ]);
  assert.ok(picked.includes('transformer/diffusion_pytorch_model.safetensors'), 'plain file when no fp16 variant exists');
  assert.ok(picked.includes('model_index.json') && picked.includes('scheduler/scheduler_config.json'));
  for (const f of picked) assert.match(f, /\.(json|txt|model|safetensors)$/, f);
  assert.ok(!picked.some((f) => /tokenizer_3|README|gitattributes/.test(f)));
  assert.deepEqual(picked, [...picked].sort());
  assert.deepEqual(selectSD3Components(files.map((rfilename) => ({ rfilename })), { t5: false }), picked);
});

test('SD3 selection with T5 takes the fp16 index and its shards; variant null takes the fp32 set', () => {
  const t5 = selectSD3Components(files, { t5: true }).filter((f) => f.startsWith('text_encoder_3/'));
  assert.deepEqual(t5, [
    'text_encoder_3/config.json',
    'text_encoder_3/model.fp16-00001-of-00002.safetensors',
    'text_encoder_3/model.fp16-00002-of-00002.safetensors',
    'text_encoder_3/model.safetensors.index.fp16.json',
  ]);
  const full = selectSD3Components(files, { t5: true, variant: null });
  assert.deepEqual(full.filter((f) => f.startsWith('text_encoder_3/')), [
    'text_encoder_3/config.json',
    'text_encoder_3/model-00001-of-00002.safetensors',
    'text_encoder_3/model-00002-of-00002.safetensors',
    'text_encoder_3/model.safetensors.index.json',
  ]);
  assert.ok(full.includes('text_encoder/model.safetensors') && !full.includes('text_encoder/model.fp16.safetensors'));
  assert.ok(!full.some((f) => f.endsWith('.bin')));
});

test('an incomplete file list is refused with every problem named', () => {
  const partial = files.filter((f) => !f.startsWith('vae/') && f !== 'model_index.json' && !f.startsWith('text_encoder_3/'));
  assert.throws(() => selectSD3Components(partial, { t5: true }), (err: Error) => {
    assert.match(err.message, /model_index\.json is missing/);
    assert.match(err.message, /vae\/config\.json is missing/);
    assert.match(err.message, /vae\/ has no usable \.safetensors weights \(found: nothing\)/);
    assert.match(err.message, /text_encoder_3\/config\.json is missing/);
    assert.match(err.message, /pass t5: false/);
    return true;
  });
  const onlyBin = [...files.filter((f) => !f.startsWith('transformer/')), 'transformer/config.json', 'transformer/diffusion_pytorch_model.bin'];
  assert.throws(() => selectSD3Components(onlyBin, { t5: false }), /transformer\/ has no usable \.safetensors weights \(found: diffusion_pytorch_model\.bin\)/);
  assert.throws(() => selectSD3Components(files, {} as never), /needs \{ t5: true \| false \}/);
});

test('single-file checkpoints must exist and be safetensors', () => {
  const single = ['README.md', 'sd3_medium.safetensors', 'sd3_medium_incl_clips.safetensors', 'sd3_medium.ckpt'];
  assert.deepEqual(selectSingleFiles(single, 'sd3_medium_incl_clips.safetensors'), ['sd3_medium_incl_clips.safetensors']);
  assert.throws(() => selectSingleFiles(single, 'sd3_medium.ckpt'), /"sd3_medium\.ckpt" is not a \.safetensors file/);
  assert.throws(() => selectSingleFiles(single, 'x.safetensors'), /its \.safetensors files are: sd3_medium\.safetensors, sd3_medium_incl_clips\.safetensors/);
});

test('globs follow fnmatch: * crosses folders, [!x] negates, a trailing / means the whole folder', () => {
  const cases: [string, string, boolean][] = [
    ['*.json', 'vae/config.json', true],
    ['vae/*', 'vae/config.json', true],
    ['vae/', 'vae/sub/x.bin', true],
    ['vae/*', 'vae2/config.json', false],
    ['text_encoder_?/*', 'text_encoder_3/config.json', true],
    ['text_encoder_[!3]/*', 'text_encoder_3/config.json', false],
    ['text_encoder_[!3]/*', 'text_encoder_2/config.json', true],
    ['model.(fp16)', 'model.(fp16)', true],
    ['a.b', 'aXb', false],
  ];
  for (const [glob, p, want] of cases) assert.equal(globToRegExp(glob).test(p), want, `${glob} ~ ${p}`);
  assert.throws(() => globToRegExp(''), /file pattern "" is not valid/);
});
