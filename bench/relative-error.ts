/** Error of a float tensor against a reference: max |a - b| / max |b| and RMS(a - b) / RMS(b). */
export function relativeErrors(a: Float32Array, b: Float32Array): { maxRel: number; rmsRel: number } {
  let max = 0, ref = 0, se = 0, sr = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs(a[i]! - b[i]!));
    ref = Math.max(ref, Math.abs(b[i]!));
    se += (a[i]! - b[i]!) ** 2;
    sr += b[i]! ** 2;
  }
  return { maxRel: max / ref, rmsRel: Math.sqrt(se / sr) };
}
