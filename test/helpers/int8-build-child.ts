/**
 * Child process for the int8 cache crash test: builds the int8 cache of the weights in argv[2] (every 2-D
 * tensor) with openInt8CacheAsync, printing "progress N/M" after each tensor, then "done".
 */
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { openInt8CacheAsync } from '../../src/quant/int8.js';

const file = process.argv[2]!;
const f = SafetensorsFile.open(file);
const store = new SafetensorsStore([f], withPrefix(''));
const names = f.keys().filter((k) => f.shape(k).length === 2);
await openInt8CacheAsync(store, names, 'test', { onProgress: (d, t) => process.stdout.write(`progress ${d}/${t}\n`) });
process.stdout.write('done\n');
f.close();
