// servelab_bench_model: the engine's decode and prefill speed on a Llama-3-8B-shaped model with
// random bf16 weights (made on the GPU, nothing to download), the numbers behind the issue's
// floors. Output is JSON for benchmarks/report.py; progress goes to stderr.
//
//   servelab_bench_model decode  [--batch-sizes 1,8,32,64,128] [--prompt 128] [--new-tokens 256]
//                                [--layout paged|contiguous] [--json FILE]
//   servelab_bench_model prefill [--tokens 2048] [--json FILE]
//   servelab_bench_model swapstep [--batch-sizes 64] [--prompt 128] [--swap-blocks 128]
//                                 [--json FILE]
//   servelab_bench_model schedule [--batch-sizes 64,256] [--prompt 128] [--new-tokens 64]
//                                 [--json FILE]
//
// Decode: B prompts of random tokens are prefilled together, then new tokens are generated
// greedily (argmax on the device) one step at a time, EOS ignored. tokens/s counts every new token
// over the whole run, prefill included, as Hugging Face's generate() is timed; ms/step is the
// decode part alone. At each batch size one untimed run goes first (it records the CUDA graphs).
// Bytes per step: every weight the step reads (all but the embedding table, of which one row per
// token) plus the KV cache read and written, averaged over the run.
//
// Swapstep: what a swap-in costs a decode step running at the same time (the first batch size
// only). A swap-in of S scattered blocks of 16 tokens (S = 128: 256 MiB for this shape) is issued
// just before a step, with each swap method: "overlapped" lets layer l's attention wait only for
// layer l's copies (the engine's way), "serial" waits for the whole swap before the step starts.
// Also: the step alone (replayed from a CUDA graph), the step with a 1-block swap (what running
// without a graph costs), and the swap alone; and the kernel's grid cap swept from 4 to
// unlimited thread blocks (per keys and per values). Medians over 16 steps each.
//
// Schedule: the continuous-batching scheduler's CPU time per step against the step's forward.
// B requests (prompt of --prompt random tokens, --new-tokens each) are admitted into a block pool
// sized from 90% of GPU memory, then decoded greedily, one step per token, exactly as the engine
// does: schedule() and building the batch (block tables, tokens), the forward with the cache plan
// (argmax on the device), then complete_step() and one append_token() per sequence. Medians over
// the decode steps with all B sequences running; "scheduling" = schedule + batch building +
// bookkeeping after the step, i.e. everything on the engine thread but the forward and sampling.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cuda/cuda_backend.h"
#include "bench_cli.h"
#include "cache_engine/cache_engine.h"
#include "common/error.h"
#include "engine/step_runner.h"
#include "model/llama_model.h"
#include "scheduler/continuous_batcher.h"

namespace servelab {
namespace {

ModelConfig llama3_8b_shape() {
  ModelConfig c;
  c.architecture_name = "LlamaForCausalLM";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.max_position_embeddings = 8192;
  c.torch_dtype = "bfloat16";
  return c;
}

/// Random weights made on the device: normal(0, 0.02) matrices, unit norm gains.
ModelWeights random_weights(const ModelConfig& c, CudaBackend& backend, int64_t* bytes_read) {
  uint64_t seed = 1;
  int64_t bytes = 0;
  auto matrix = [&](int64_t rows, int64_t cols) {
    Tensor tensor = backend.allocate({rows, cols});
    backend.fill_normal(tensor, 0.02f, seed++);
    bytes += static_cast<int64_t>(tensor.nbytes());
    return tensor;
  };
  std::vector<float> ones(static_cast<size_t>(c.hidden_size), 1.0f);
  auto gain = [&] {
    bytes += c.hidden_size * 2;
    return backend.upload(ones.data(), {c.hidden_size});
  };
  ModelWeights w;
  w.embed_tokens = matrix(c.vocab_size, c.hidden_size);
  bytes -= static_cast<int64_t>(w.embed_tokens.nbytes());  // only the looked-up rows are read
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    LayerWeights l;
    l.input_norm = gain();
    l.q_proj = matrix(c.q_size(), c.hidden_size);
    l.k_proj = matrix(c.kv_size(), c.hidden_size);
    l.v_proj = matrix(c.kv_size(), c.hidden_size);
    l.o_proj = matrix(c.hidden_size, c.q_size());
    l.post_attention_norm = gain();
    l.gate_proj = matrix(c.intermediate_size, c.hidden_size);
    l.up_proj = matrix(c.intermediate_size, c.hidden_size);
    l.down_proj = matrix(c.hidden_size, c.intermediate_size);
    w.layers.push_back(l);
  }
  w.final_norm = gain();
  w.lm_head = matrix(c.vocab_size, c.hidden_size);
  backend.synchronize();
  *bytes_read = bytes;
  return w;
}

int64_t parameter_count(const ModelConfig& c) {
  const int64_t per_layer = c.hidden_size * (c.q_size() + 2 * c.kv_size()) +
                            c.q_size() * c.hidden_size + 3 * c.hidden_size * c.intermediate_size +
                            2 * c.hidden_size;
  return c.num_hidden_layers * per_layer + 2 * c.vocab_size * c.hidden_size + c.hidden_size;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) values.push_back(std::stoll(item));
  return values;
}

struct Options {
  std::string mode;
  std::vector<int64_t> batch_sizes = {1, 8, 32, 64, 128};
  int64_t prompt = 128, new_tokens = 256, tokens = 2048, swap_blocks = 128;
  std::string layout = "paged", json_path;
};

Options parse(int argc, char** argv) {
  if (argc < 2)
    fail("usage: servelab_bench_model decode|prefill [options] (see the file's header)");
  Options o;
  o.mode = argv[1];
  bench::parse_flags(argc, argv, 2, [&](const std::string& flag, const std::string& value) {
    if (flag == "--batch-sizes")
      o.batch_sizes = parse_list(value);
    else if (flag == "--prompt")
      o.prompt = std::stoll(value);
    else if (flag == "--new-tokens")
      o.new_tokens = std::stoll(value);
    else if (flag == "--tokens")
      o.tokens = std::stoll(value);
    else if (flag == "--swap-blocks")
      o.swap_blocks = std::stoll(value);
    else if (flag == "--layout")
      o.layout = value;
    else if (flag == "--json")
      o.json_path = value;
    else
      return false;
    return true;
  });
  if (o.mode != "decode" && o.mode != "prefill" && o.mode != "swapstep" && o.mode != "schedule")
    fail("mode must be decode, prefill, swapstep or schedule");
  if (o.layout != "paged" && o.layout != "contiguous") fail("--layout is paged or contiguous");
  return o;
}

struct DecodeResult {
  double prefill_seconds = 0, decode_seconds = 0;
};

/// One greedy run: prefill B prompts together, then new_tokens - 1 decode steps.
DecodeResult run_decode(LlamaModel& model, int64_t batch_size, const Options& o, uint64_t seed) {
  const ModelConfig& c = model.config();
  const int64_t block_size = 16;
  const int64_t context = o.prompt + o.new_tokens;
  const int64_t blocks_per_seq = (context + block_size - 1) / block_size;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));

  PagedKvCache pool;
  std::vector<ContiguousKvCache> caches;
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch_size));
  if (o.layout == "paged") {
    pool = model.new_paged_kv_cache(batch_size * blocks_per_seq, block_size);
    std::vector<int32_t> order(static_cast<size_t>(batch_size * blocks_per_seq));
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::shuffle(order.begin(), order.end(), rng);  // as a block manager would leave them
    for (int64_t s = 0; s < batch_size; ++s) {
      tables[s].assign(order.begin() + s * blocks_per_seq,
                       order.begin() + (s + 1) * blocks_per_seq);
    }
  } else {
    for (int64_t s = 0; s < batch_size; ++s) caches.push_back(model.new_kv_cache(context));
  }
  std::vector<ForwardSequence> batch(static_cast<size_t>(batch_size));
  for (int64_t s = 0; s < batch_size; ++s) {
    for (int64_t i = 0; i < o.prompt; ++i) batch[s].tokens.push_back(token(rng));
    if (o.layout == "paged") {
      batch[s].paged_cache = &pool;
      batch[s].block_table = &tables[s];
    } else {
      batch[s].cache = &caches[s];
    }
  }
  DecodeResult result;
  auto start = std::chrono::steady_clock::now();
  std::vector<int32_t> next = model.forward_greedy(batch);
  result.prefill_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step < o.new_tokens; ++step) {
    for (int64_t s = 0; s < batch_size; ++s) {
      batch[s].num_cached = o.prompt + step - 1;
      batch[s].tokens = {next[s]};
    }
    next = model.forward_greedy(batch);
  }
  result.decode_seconds = seconds_since(start);
  return result;
}

double median_ms(std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2] * 1e3;
}

/// Decode steps at one batch size with and without a concurrent swap-in (see the file header).
nlohmann::json run_swapstep(LlamaModel& model, CudaBackend& backend, int64_t batch_size,
                            const Options& o) {
  const ModelConfig& c = model.config();
  const int64_t block_size = 16;
  const int64_t repeats = 16;
  // The kernel at its default grid, then memcpy, then the kernel's grid cap swept (a ladder:
  // how many thread blocks the swap may take from the forward).
  struct Variant {
    SwapCopy method;
    int kernel_blocks;  // 0: the default cap
  };
  const std::vector<Variant> variants = {{SwapCopy::kKernel, 0},     {SwapCopy::kMemcpy, 0},
                                         {SwapCopy::kKernel, 4},     {SwapCopy::kKernel, 8},
                                         {SwapCopy::kKernel, 16},    {SwapCopy::kKernel, 128},
                                         {SwapCopy::kKernel, 100000}};
  // Warm-up, plain, then (plain again: the context grows, 1-block swap, overlapped, serial) per
  // variant.
  const int64_t steps = 8 + repeats * (1 + 4 * static_cast<int64_t>(variants.size()));
  const int64_t blocks_per_seq = (o.prompt + steps + block_size - 1) / block_size;
  const int64_t sequence_blocks = batch_size * blocks_per_seq;
  std::mt19937 rng(4);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  PagedKvCache pool = model.new_paged_kv_cache(sequence_blocks + o.swap_blocks, block_size);
  PagedKvCache host = backend.allocate_host_paged_kv_cache(c.num_hidden_layers, o.swap_blocks,
                                                           block_size, c.num_key_value_heads,
                                                           c.head_dim, backend.compute_dtype());
  std::vector<int32_t> order(static_cast<size_t>(pool.num_blocks));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch_size));
  for (int64_t s = 0; s < batch_size; ++s)
    tables[s].assign(order.begin() + s * blocks_per_seq, order.begin() + (s + 1) * blocks_per_seq);
  // The swap-in's destinations: the blocks no sequence uses, in shuffled order.
  Backend::BlockPairs swap_pairs, one_pair;
  for (int64_t i = 0; i < o.swap_blocks; ++i)
    swap_pairs.emplace_back(static_cast<int32_t>(i), order[sequence_blocks + i]);
  one_pair.push_back(swap_pairs.front());

  std::vector<ForwardSequence> batch(static_cast<size_t>(batch_size));
  for (int64_t s = 0; s < batch_size; ++s) {
    for (int64_t i = 0; i < o.prompt; ++i) batch[s].tokens.push_back(token(rng));
    batch[s].paged_cache = &pool;
    batch[s].block_table = &tables[s];
  }
  std::vector<int32_t> next = model.forward_greedy(batch);
  int64_t cached = o.prompt;
  // One decode step; `before` runs just before it and is timed with it.
  auto step = [&](const std::function<void()>& before) {
    for (int64_t s = 0; s < batch_size; ++s) {
      batch[s].num_cached = cached;
      batch[s].tokens = {next[s]};
    }
    backend.synchronize();
    auto start = std::chrono::steady_clock::now();
    before();
    next = model.forward_greedy(batch);  // returns host tokens: the step has finished
    const double seconds = seconds_since(start);
    ++cached;
    return seconds;
  };
  auto measure = [&](const std::function<void()>& before) {
    std::vector<double> times;
    for (int64_t r = 0; r < repeats; ++r) times.push_back(step(before));
    return median_ms(times);
  };
  for (int i = 0; i < 8; ++i) step([] {});
  nlohmann::json result = {
      {"batch", batch_size},
      {"block_size", block_size},
      {"swap_blocks", o.swap_blocks},
      {"swap_bytes", o.swap_blocks * 2 * c.num_hidden_layers * block_size * c.kv_size() * 2},
      {"plain_step_ms", measure([] {})},
      {"methods", nlohmann::json::array()}};
  std::fprintf(stderr, "[bench] swapstep batch %lld: plain step %.3f ms\n",
               static_cast<long long>(batch_size), result["plain_step_ms"].get<double>());
  for (const Variant& variant : variants) {
    const SwapCopy method = variant.method;
    backend.set_swap_copy(method);
    backend.set_swap_kernel_blocks(variant.kernel_blocks);
    const std::string name =
        method == SwapCopy::kMemcpy ? std::string("memcpy")
        : variant.kernel_blocks == 0
            ? std::string("kernel")
            : "kernel, grid cap " + std::to_string(variant.kernel_blocks) + " x 2";
    std::vector<double> alone;
    for (int64_t r = 0; r < repeats; ++r) {
      backend.synchronize();
      auto start = std::chrono::steady_clock::now();
      backend.swap_blocks(host, pool, swap_pairs);
      backend.synchronize();
      alone.push_back(seconds_since(start));
    }
    const double plain = measure([] {});  // the baseline at this variant's context length
    const double tiny = measure([&] { backend.swap_blocks(host, pool, one_pair); });
    const double overlapped = measure([&] { backend.swap_blocks(host, pool, swap_pairs); });
    const double serial = measure([&] {
      backend.swap_blocks(host, pool, swap_pairs);
      backend.synchronize();
    });
    result["methods"].push_back({{"method", name},
                                 {"swap_alone_ms", median_ms(alone)},
                                 {"plain_step_ms", plain},
                                 {"step_with_one_block_swap_ms", tiny},
                                 {"overlapped_step_ms", overlapped},
                                 {"serial_step_ms", serial}});
    std::fprintf(
        stderr,
        "[bench]   %s: swap alone %.2f ms, step alone %.3f ms, step + 1-block swap %.3f ms, "
        "overlapped %.2f ms, serial %.2f ms\n",
        name.c_str(), median_ms(alone), plain, tiny, overlapped, serial);
  }
  return result;
}

double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// The scheduler's share of a decode step at `batch_size` running sequences (see the header).
nlohmann::json run_schedule(LlamaModel& model, Backend& backend, int64_t batch_size,
                            const Options& o) {
  const int64_t block_size = 16;
  const KvCacheShape shape = kv_cache_shape(model, block_size);
  ContinuousSchedulerConfig config;
  config.batch_max_tokens = std::max<int64_t>(8192, o.prompt);
  config.batch_max_beams = batch_size;
  config.blocks.block_size = block_size;
  config.blocks.num_gpu_blocks =
      gpu_blocks_for_memory_fraction(backend, shape, 0.9, int64_t{6} << 30);
  config.blocks.num_cpu_blocks = 0;
  ContinuousScheduler scheduler(config);
  CacheEngine cache(backend, shape, config.blocks.num_gpu_blocks, 0);
  StepRunner runner(model, cache);
  std::mt19937 rng(static_cast<uint32_t>(batch_size));
  std::uniform_int_distribution<int32_t> token(0,
                                               static_cast<int32_t>(model.config().vocab_size - 1));
  for (int64_t r = 0; r < batch_size; ++r) {
    ScheduledRequestSpec spec;
    spec.id = r;
    for (int64_t i = 0; i < o.prompt; ++i) spec.prompt.push_back(token(rng));
    spec.max_total_tokens = o.prompt + o.new_tokens;
    scheduler.add(std::move(spec));
  }
  using Clock = std::chrono::steady_clock;
  std::vector<double> schedule_ms, forward_ms, bookkeeping_ms;
  std::vector<int64_t> generated(static_cast<size_t>(batch_size), 0);
  int64_t finished = 0, step_index = 0;
  while (finished < batch_size) {
    auto start = Clock::now();
    SchedulerStep step = scheduler.schedule();
    std::vector<StepSequence> batch;
    batch.reserve(step.sequences.size());
    for (const ScheduledSequence& s : step.sequences)
      batch.push_back({s.tokens, s.num_cached, &scheduler.block_table(s.sequence)});
    const double schedule = seconds_since(start) * 1e3;
    start = Clock::now();
    std::vector<int32_t> next = runner.run_greedy(step.plan, batch);
    const double forward = seconds_since(start) * 1e3;
    start = Clock::now();
    scheduler.complete_step(step);
    for (size_t i = 0; i < step.sequences.size(); ++i) {
      const ScheduledSequence& s = step.sequences[i];
      if (++generated[static_cast<size_t>(s.request)] >= o.new_tokens) {
        scheduler.finish(s.request);
        finished += 1;
      } else {
        scheduler.append_token(s.sequence, next[i]);
      }
    }
    const double bookkeeping = seconds_since(start) * 1e3;
    // Decode steps with every sequence running (the first step prefills, the last ones drain).
    if (step.num_prefill_tokens == 0 && step.num_decode_tokens == batch_size && step_index > 2) {
      schedule_ms.push_back(schedule);
      forward_ms.push_back(forward);
      bookkeeping_ms.push_back(bookkeeping);
    }
    ++step_index;
  }
  const double scheduling = median_of(schedule_ms) + median_of(bookkeeping_ms);
  const double forward = median_of(forward_ms);
  std::fprintf(stderr,
               "[bench] schedule batch %lld: schedule+batch %.3f ms, bookkeeping %.3f ms, "
               "forward %.3f ms: scheduling is %.2f%% of the step (%zu steps, %lld KV blocks)\n",
               static_cast<long long>(batch_size), median_of(schedule_ms),
               median_of(bookkeeping_ms), forward, 100.0 * scheduling / (scheduling + forward),
               schedule_ms.size(), static_cast<long long>(config.blocks.num_gpu_blocks));
  return {{"batch", batch_size},
          {"prompt", o.prompt},
          {"new_tokens", o.new_tokens},
          {"steps_measured", schedule_ms.size()},
          {"gpu_blocks", config.blocks.num_gpu_blocks},
          {"schedule_and_batch_ms", median_of(schedule_ms)},
          {"bookkeeping_ms", median_of(bookkeeping_ms)},
          {"forward_ms", forward},
          {"scheduling_share", scheduling / (scheduling + forward)}};
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  CudaBackend backend(CudaBackendOptions{DType::kBF16});
  const std::string device = backend.device_description();
  std::fprintf(stderr, "[bench] %s\n[bench] making random Llama-3-8B-shaped bf16 weights...\n",
               device.c_str());
  ModelConfig config = llama3_8b_shape();
  int64_t weight_bytes_read = 0;
  LlamaModel model(config, random_weights(config, backend, &weight_bytes_read), backend);
  const int64_t params = parameter_count(config);
  nlohmann::json out = {{"device", device},
                        {"model",
                         {{"hidden", config.hidden_size},
                          {"intermediate", config.intermediate_size},
                          {"layers", config.num_hidden_layers},
                          {"heads", config.num_attention_heads},
                          {"kv_heads", config.num_key_value_heads},
                          {"vocab", config.vocab_size},
                          {"params", params},
                          {"weight_bytes", params * 2},
                          {"weight_bytes_read_per_step", weight_bytes_read}}}};

  if (o.mode == "schedule") {
    out["schedule"] = nlohmann::json::array();
    for (int64_t batch_size : o.batch_sizes) {
      run_schedule(model, backend, batch_size, o);  // warm-up: CUDA graphs, allocations
      out["schedule"].push_back(run_schedule(model, backend, batch_size, o));
    }
  } else if (o.mode == "swapstep") {
    out["swapstep"] = run_swapstep(model, backend, o.batch_sizes.front(), o);
  } else if (o.mode == "decode") {
    out["layout"] = o.layout;
    out["decode"] = nlohmann::json::array();
    for (int64_t batch_size : o.batch_sizes) {
      std::fprintf(stderr, "[bench] decode batch %lld: warm-up run...\n",
                   static_cast<long long>(batch_size));
      run_decode(model, batch_size, o, 1);
      std::fprintf(stderr, "[bench] decode batch %lld: timed run...\n",
                   static_cast<long long>(batch_size));
      const DecodeResult r = run_decode(model, batch_size, o, 2);
      const int64_t steps = o.new_tokens - 1;
      const double ms_per_step = r.decode_seconds * 1e3 / static_cast<double>(steps);
      // KV bytes of a decode step: all layers' keys and values of the context read, one token's
      // written; the context grows from prompt + 1 to prompt + new_tokens - 1 (mean taken).
      const double kv_per_token = 2.0 * config.num_hidden_layers * config.kv_size() * 2;
      const double mean_context = o.prompt + o.new_tokens / 2.0;
      const double bytes_per_step =
          static_cast<double>(weight_bytes_read) + batch_size * (mean_context + 1) * kv_per_token;
      const double tokens_per_s =
          batch_size * o.new_tokens / (r.prefill_seconds + r.decode_seconds);
      out["decode"].push_back({{"batch", batch_size},
                               {"prompt", o.prompt},
                               {"new_tokens", o.new_tokens},
                               {"tokens_per_s", tokens_per_s},
                               {"ms_per_step", ms_per_step},
                               {"prefill_ms", r.prefill_seconds * 1e3},
                               {"bytes_per_step", bytes_per_step},
                               {"achieved_gbps", bytes_per_step / (ms_per_step * 1e-3) / 1e9}});
      std::fprintf(stderr, "[bench]   %.1f tokens/s, %.3f ms/step, %.0f GB/s, prefill %.1f ms\n",
                   tokens_per_s, ms_per_step, bytes_per_step / (ms_per_step * 1e-3) / 1e9,
                   r.prefill_seconds * 1e3);
    }
  } else {
    const int64_t t = o.tokens;
    std::mt19937 rng(3);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(t));
    for (int32_t& id : prompt) id = token(rng);
    const int64_t blocks = (t + 15) / 16;
    std::vector<int32_t> table(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) table[b] = static_cast<int32_t>(b);
    PagedKvCache pool = model.new_paged_kv_cache(blocks, 16);
    std::vector<double> times;
    for (int repeat = 0; repeat < 4; ++repeat) {  // the first is a warm-up
      ForwardSequence sequence{prompt};
      sequence.paged_cache = &pool;
      sequence.block_table = &table;
      std::vector<ForwardSequence> batch = {sequence};
      auto start = std::chrono::steady_clock::now();
      model.forward_greedy(batch);
      if (repeat > 0) times.push_back(seconds_since(start));
      std::fprintf(stderr, "[bench] prefill %lld tokens: run %d %.1f ms\n",
                   static_cast<long long>(t), repeat, seconds_since(start) * 1e3);
    }
    std::sort(times.begin(), times.end());
    const double seconds = times[times.size() / 2];
    // FLOPs: 2 per weight per token for the linear layers (the LM head only for the last token),
    // plus causal attention: QKᵀ and PV, 2·T²/2·head_dim each, per head and layer.
    const double linear = 2.0 * (params - 2 * config.vocab_size * config.hidden_size) * t +
                          2.0 * config.vocab_size * config.hidden_size;
    const double attention = 2.0 * 2.0 * (static_cast<double>(t) * t / 2.0) * config.head_dim *
                             config.num_attention_heads * config.num_hidden_layers;
    const double flops = linear + attention;
    out["prefill"] = {{"tokens", t},
                      {"ms", seconds * 1e3},
                      {"tokens_per_s", t / seconds},
                      {"flops", flops},
                      {"tflops", flops / seconds / 1e12}};
    std::fprintf(stderr, "[bench] prefill: %.1f ms, %.0f tokens/s, %.1f TFLOP/s\n", seconds * 1e3,
                 t / seconds, flops / seconds / 1e12);
  }
  bench::write_json(out, o.json_path);
  return 0;
}

}  // namespace
}  // namespace servelab

int main(int argc, char** argv) {
  return servelab::bench::bench_main("servelab_bench_model", argc, argv, servelab::run);
}
