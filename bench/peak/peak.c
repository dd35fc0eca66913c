/*
 * Hardware peak microbenchmark for x86-64 CPUs with AVX2 + FMA (run: npm run bench:peak).
 *
 * Measures, on 1 thread and on N threads (N = online CPUs):
 *   fp32: _mm256_fmadd_ps on 12 independent ymm accumulators, 16 FLOP per fmadd (8 lanes x mul+add).
 *   int8: the AVX2 u8 x s8 sequence of ORT's int8 GEMM kernels:
 *         _mm256_maddubs_epi16 (u8 x s8 -> s16 pair sums), _mm256_madd_epi16 with ones (-> s32),
 *         _mm256_add_epi32 into accumulators; 64 ops (32 multiply-adds) per maddubs.
 * Each measurement runs about SECONDS (default 1, argv[1] overrides) and the best of 3 is reported.
 * Prints one human line per measurement, then one JSON line.
 *
 * Build: cc -O2 -mavx2 -mfma -pthread peak.c -o peak
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif

#if !defined(__AVX2__) || !defined(__FMA__)
#error "compile with -mavx2 -mfma"
#endif

#define REPEATS 3
#define FP32_FLOP_PER_ITER (12.0 * 16.0)  /* 12 fmadd x 16 FLOP */
#define INT8_OPS_PER_ITER (8.0 * 64.0)    /* 8 maddubs x 64 ops */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Volatile inputs so the compiler cannot constant-fold the loops. */
static volatile float fp_mul = 0.999999f, fp_add = 1e-6f;
static volatile int8_t i8_seed = 3;

/* 12 independent FMA chains: enough to cover 4-cycle latency x 2 FMA pipes with margin. */
static double fp32_kernel(uint64_t iters) {
  const __m256 a = _mm256_set1_ps(fp_mul), b = _mm256_set1_ps(fp_add);
  __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f), c3 = _mm256_set1_ps(0.3f);
  __m256 c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f), c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f);
  __m256 c8 = _mm256_set1_ps(0.8f), c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.0f), c11 = _mm256_set1_ps(1.1f);
  for (uint64_t i = 0; i < iters; i++) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b); c2 = _mm256_fmadd_ps(c2, a, b);
    c3 = _mm256_fmadd_ps(c3, a, b); c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b); c8 = _mm256_fmadd_ps(c8, a, b);
    c9 = _mm256_fmadd_ps(c9, a, b); c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  double sum = 0;
  for (int k = 0; k < 8; k++) sum += out[k];
  return sum;
}

/*
 * 2 u8 activation vectors x 4 s8 weight vectors per iteration (8 maddubs), 4 s32 accumulators,
 * like a 2-row x 4-column register tile. The empty asm makes the activations opaque each
 * iteration so the products cannot be hoisted out of the loop; it emits no instruction.
 */
static double int8_kernel(uint64_t iters) {
  const int8_t s = i8_seed;
  __m256i a0 = _mm256_set1_epi8((char)(s + 1)), a1 = _mm256_set1_epi8((char)(s + 2));
  const __m256i b0 = _mm256_set1_epi8((char)(s - 5)), b1 = _mm256_set1_epi8((char)(s - 1));
  const __m256i b2 = _mm256_set1_epi8((char)(s + 1)), b3 = _mm256_set1_epi8((char)(s + 4));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
  __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
  for (uint64_t i = 0; i < iters; i++) {
    __asm__ volatile("" : "+x"(a0), "+x"(a1));
    c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, b0), ones));
    c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, b1), ones));
    c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, b2), ones));
    c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, b3), ones));
    c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, b0), ones));
    c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, b1), ones));
    c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, b2), ones));
    c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, b3), ones));
  }
  __m256i t = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));
  int32_t out[8];
  _mm256_storeu_si256((__m256i *)out, t);
  double sum = 0;
  for (int k = 0; k < 8; k++) sum += out[k];
  return sum;
}

typedef double (*kernel_fn)(uint64_t);

typedef struct {
  kernel_fn fn;
  uint64_t iters;
  int cpu;
  pthread_barrier_t *barrier;
  double checksum;
} worker_t;

static void pin(int cpu) {
#ifdef __linux__
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
#else
  (void)cpu;
#endif
}

static void *worker(void *p) {
  worker_t *w = (worker_t *)p;
  pin(w->cpu);
  pthread_barrier_wait(w->barrier);
  w->checksum = w->fn(w->iters);
  return NULL;
}

static double checksum_total;

/* Runs fn(iters) on `threads` threads started together; returns wall seconds. */
static double run_threads(kernel_fn fn, uint64_t iters, int threads) {
  pthread_t tid[256];
  worker_t w[256];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; t++) {
    w[t] = (worker_t){fn, iters, threads > 1 ? t : -1, &barrier, 0};
    if (pthread_create(&tid[t], NULL, worker, &w[t]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      exit(1);
    }
  }
  pthread_barrier_wait(&barrier);
  double t0 = now_s();
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  double dt = now_s() - t0;
  pthread_barrier_destroy(&barrier);
  for (int t = 0; t < threads; t++) checksum_total += w[t].checksum;
  return dt;
}

/* Best-of-REPEATS rate in G(FL)OP/s for all threads together, each run lasting about `seconds`. */
static double measure(const char *name, kernel_fn fn, double ops_per_iter, int threads, double seconds) {
  uint64_t iters = 1u << 20;
  double dt;
  /* Calibrate on one thread until a run takes at least 50 ms, then scale to `seconds`. */
  while ((dt = run_threads(fn, iters, 1)) < 0.05) iters *= 2;
  iters = (uint64_t)((double)iters * seconds / dt) + 1;
  double best = 0;
  for (int r = 0; r < REPEATS; r++) {
    dt = run_threads(fn, iters, threads);
    double rate = ops_per_iter * (double)iters * threads / dt * 1e-9;
    if (rate > best) best = rate;
  }
  printf("%-5s %2d thread%s: %8.1f G%s/s total, %7.1f per thread\n", name, threads, threads == 1 ? " " : "s", best,
         strcmp(name, "fp32") == 0 ? "FLOP" : "OP", best / threads);
  fflush(stdout);
  return best;
}

static void cpu_name(char *out, size_t n) {
  snprintf(out, n, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *v = strchr(line, ':');
      if (!v) break;
      v++;
      while (*v == ' ' || *v == '\t') v++;
      size_t j = 0;
      for (; *v && *v != '\n' && j + 1 < n; v++)
        if (*v != '"' && *v != '\\' && (unsigned char)*v >= 0x20) out[j++] = *v; /* JSON-safe */
      out[j] = 0;
      break;
    }
  }
  fclose(f);
}

int main(int argc, char **argv) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    fprintf(stderr, "this CPU lacks AVX2 or FMA\n");
    return 1;
  }
  double seconds = argc > 1 ? atof(argv[1]) : 1.0;
  if (!(seconds > 0)) seconds = 1.0;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
  char cpu[256];
  cpu_name(cpu, sizeof cpu);
  printf("cpu: %s, %d online CPUs, %.2f s per run, best of %d\n", cpu, threads, seconds, REPEATS);

  double f1 = measure("fp32", fp32_kernel, FP32_FLOP_PER_ITER, 1, seconds);
  double fn = threads > 1 ? measure("fp32", fp32_kernel, FP32_FLOP_PER_ITER, threads, seconds) : f1;
  double i1 = measure("int8", int8_kernel, INT8_OPS_PER_ITER, 1, seconds);
  double in = threads > 1 ? measure("int8", int8_kernel, INT8_OPS_PER_ITER, threads, seconds) : i1;

  printf("implied clock at 32 FLOP/cycle/core (2 FMA pipes x 8 lanes x 2): %.2f GHz; int8/fp32 ratio %.2f\n",
         f1 / 32.0, i1 / f1);
  printf("scaling %d threads vs 1: fp32 %.2fx, int8 %.2fx (checksum %g)\n", threads, fn / f1, in / i1,
         checksum_total);
  printf("{\"cpu\":\"%s\",\"threads\":%d,\"fp32GflopsPerThread\":%.1f,\"fp32Gflops\":%.1f,"
         "\"int8GopsPerThread\":%.1f,\"int8Gops\":%.1f,\"fp32Scaling\":%.2f,\"int8Scaling\":%.2f}\n",
         cpu, threads, f1, fn, i1, in, fn / f1, in / i1);
  return 0;
}
