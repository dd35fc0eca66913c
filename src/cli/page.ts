/** The web page served by `sd3 serve`. */
export const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sd3.ts</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.4em} label{display:block;margin:.6em 0 .2em} textarea,input{width:100%;box-sizing:border-box;padding:.4em;font:inherit}
 .row{display:flex;gap:1em} .row>div{flex:1} button{margin-top:1em;padding:.5em 1.5em;font:inherit}
 #out img{max-width:100%;margin-top:1em;border:1px solid #ccc} #status{color:#666;margin-top:.5em;white-space:pre-wrap}
</style></head><body>
<h1>sd3.ts &mdash; Stable Diffusion 3 Medium</h1>
<form id="f">
 <label for="prompt">Prompt</label><textarea id="prompt" rows="3" required>a photograph of an astronaut riding a horse</textarea>
 <label for="neg">Negative prompt</label><input id="neg">
 <div class="row">
  <div><label for="steps">Steps</label><input id="steps" type="number" min="1" value="28"></div>
  <div><label for="cfg">Guidance</label><input id="cfg" type="number" step="0.5" value="7"></div>
  <div><label for="seed">Seed</label><input id="seed" type="number" min="0" placeholder="random"></div>
 </div>
 <button id="go">Generate</button>
</form>
<div id="status"></div><div id="out"></div>
<script>
const $ = (id) => document.getElementById(id);
fetch('/api/health').then(r => r.json()).then(h => { $('status').textContent = 'model ' + h.model + ', ' + h.width + 'x' + h.height; });
$('f').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('go').disabled = true; $('status').textContent = 'generating...';
  const t0 = performance.now();
  try {
    const body = { prompt: $('prompt').value, negativePrompt: $('neg').value, steps: $('steps').value, cfgScale: $('cfg').value, seed: $('seed').value };
    const r = await fetch('/api/generate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error((await r.json()).error);
    const img = new Image(); img.src = URL.createObjectURL(await r.blob()); img.alt = body.prompt;
    img.onload = () => { if (img.naturalWidth < 256) { img.style.width = '256px'; img.style.imageRendering = 'pixelated'; } };
    $('out').prepend(img);
    const params = r.headers.get('x-sd3-parameters') || '';
    const cut = params.includes('"promptTruncated":true') ? ' (the prompt is longer than CLIP reads, 75 tokens: its end was ignored)' : '';
    $('status').textContent = 'done in ' + ((performance.now() - t0) / 1000).toFixed(1) + ' s' + cut + '  ' + params;
  } catch (err) { $('status').textContent = 'error: ' + err.message; }
  $('go').disabled = false;
});
</script></body></html>`;
