#!/usr/bin/env python3
"""Hugging Face transformers' decode throughput on a Llama-3-8B-shaped model: the baseline that
servelab_bench_model decode is compared with.

The model is LlamaForCausalLM with Llama-3-8B's configuration (hidden 4096, intermediate 14336,
32 layers, 32 heads, 8 KV heads, vocabulary 128256, rope_theta 500000) and random bf16 weights
made on the GPU (no checkpoint is needed; speed does not depend on the values). Each batch of
random 128-token prompts generates exactly 256 new tokens greedily (EOS disabled), in two modes:
  eager   the default dynamic KV cache, no compilation
  static  cache_implementation="static"; transformers then compiles the decode step with
          torch.compile. One full generate() per batch size warms it up (compiling: minutes);
          the second one is timed.
tokens/s = batch x 256 / wall time of generate(), prefill included. ms per decode step =
(time(256 new tokens) - time(1 new token)) / 255, so the prefill cancels out.

usage: hf_decode.py --json FILE [--batch-sizes 1,8,32,64,128] [--static-batch-sizes 1,64] [--quick]
"""
import argparse
import gc
import inspect
import json
import os
import sys
import time
import traceback

CONFIG = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
              max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False,
              # No EOS anywhere: generate() fills unset fields of our GenerationConfig from the
              # model's, which would otherwise bring LlamaConfig's default eos_token_id=2 back.
              bos_token_id=None, eos_token_id=None, pad_token_id=None)
ROPE_THETA = 500000.0


def int_list(text):
    return [int(item) for item in text.split(",") if item]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="where the results go (rewritten after every run)")
    parser.add_argument("--batch-sizes", type=int_list, default=None,
                        help="eager runs (default 1,8,32,64,128; --quick: 1,64)")
    parser.add_argument("--static-batch-sizes", type=int_list, default=None,
                        help="static-cache runs, each compiles for minutes (default 1,64; --quick: 1)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens generated per sequence")
    parser.add_argument("--layers", type=int, default=32, help="fewer layers for a smoke test")
    parser.add_argument("--time-limit", type=float, default=0,
                        help="seconds; runs that would start later are recorded as skipped (0: none)")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs of an existing --json file (same device and lengths) that "
                             "this invocation does not measure, so that calls cut by a time limit add up")
    args = parser.parse_args()
    if args.batch_sizes is None:
        args.batch_sizes = [1, 64] if args.quick else [1, 8, 32, 64, 128]
    if args.static_batch_sizes is None:
        args.static_batch_sizes = [1] if args.quick else [1, 64]
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (ms per step needs two lengths)")
    return args


def log(message):
    print(f"hf_decode: {message}", flush=True)


def save(path, document):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(temporary, path)


def earlier_runs(path, document):
    """The runs of an earlier file at `path` made under the same conditions, else []."""
    try:
        with open(path) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return []
    same = all(earlier.get(key) == document.get(key) for key in ("prompt", "new_tokens")) and \
        (earlier.get("device") or {}).get("name") == document["device"]["name"] and \
        (earlier.get("model") or {}).get("layers") == document["model"]["layers"]
    return list(earlier.get("runs", [])) if same else []


def merge_runs(kept, document):
    """document["runs"] plus the kept runs of an earlier file, one entry per (mode, batch): a new
    entry wins, except that a new error or skip does not replace an earlier measurement."""
    merged = {(run["mode"], run["batch"]): dict(run, from_earlier_invocation=True) for run in kept}
    for run in document["runs"]:
        key = (run["mode"], run["batch"])
        if "error" not in run or key not in merged or "error" in merged[key]:
            merged[key] = run
    order = {"eager": 0, "static": 1}
    return sorted(merged.values(), key=lambda run: (order.get(run["mode"], 2), run["batch"]))


def build_model(torch, transformers, layers):
    """LlamaForCausalLM with random bf16 weights, created directly on the GPU (never an fp32 copy)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = dict(CONFIG, num_hidden_layers=layers)
    # transformers 5 takes rope parameters as one dict; older versions take rope_theta.
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    else:
        kwargs["rope_theta"] = ROPE_THETA
    config = LlamaConfig(**kwargs)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:  # norms keep their ones
                parameter.normal_(0.0, 0.02)
    dtypes = {str(p.dtype) for p in model.parameters()}
    devices = {str(p.device.type) for p in model.parameters()}
    if dtypes != {"torch.bfloat16"} or devices != {"cuda"}:
        raise RuntimeError(f"model parameters are {dtypes} on {devices}, expected bf16 on cuda")
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None)) if isinstance(rope, dict) else None
    params = sum(p.numel() for p in model.parameters())
    info = {
        "hidden": config.hidden_size, "intermediate": config.intermediate_size,
        "layers": config.num_hidden_layers, "heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads, "vocab": config.vocab_size,
        "rope_theta": theta, "params": params, "weight_bytes": params * 2, "dtype": "bf16",
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }
    return model, info


def generation_config(transformers, new_tokens, static):
    from transformers import GenerationConfig

    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   num_beams=1, eos_token_id=None, pad_token_id=0, use_cache=True)
    if static:
        options["cache_implementation"] = "static"
    return GenerationConfig(**options)


def dynamo_graphs(torch):
    try:
        import torch._dynamo.utils as dynamo_utils
        return int(dynamo_utils.counters["stats"]["unique_graphs"])
    except Exception:  # counters are internal; their absence only loses a detail of the report
        return -1


def free_cache(torch, model):
    """Drops the static cache that generate() keeps on the model, and cached allocator blocks."""
    for name in ("_cache", "_static_cache"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    gc.collect()
    torch.cuda.empty_cache()


def timed_generate(torch, model, input_ids, attention_mask, config):
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                generation_config=config)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    new = output.shape[1] - input_ids.shape[1]
    if new != config.max_new_tokens:
        raise RuntimeError(f"generate() made {new} new tokens, expected {config.max_new_tokens}")
    return elapsed


def run_one(torch, transformers, model, mode, batch, args):
    """One (mode, batch) measurement: a dict for the JSON."""
    static = mode == "static"
    run = {"mode": mode, "batch": batch, "prompt": args.prompt, "new_tokens": args.new_tokens}
    generator = torch.Generator(device="cuda").manual_seed(batch)
    input_ids = torch.randint(3, CONFIG["vocab_size"], (batch, args.prompt), device="cuda",
                              generator=generator)
    attention_mask = torch.ones_like(input_ids)
    full = generation_config(transformers, args.new_tokens, static)
    one = generation_config(transformers, 1, static)

    graphs_before = dynamo_graphs(torch)
    if static:
        # The first full generate() compiles the decode step; it is the warm-up.
        run["warmup_s"] = timed_generate(torch, model, input_ids, attention_mask, full)
        graphs_after = dynamo_graphs(torch)
        run["compiled"] = (graphs_after > graphs_before) or getattr(model, "_compiled_call", None) is not None
        run["dynamo_graphs_added"] = graphs_after - graphs_before if graphs_before >= 0 else None
        compile_config = getattr(full, "compile_config", None)
        run["compile_config"] = repr(compile_config) if compile_config is not None else None
        log(f"  static batch {batch}: warm-up (compile) {run['warmup_s']:.1f} s, "
            f"compiled={run['compiled']}")
    else:
        warm = generation_config(transformers, 8, False)
        run["warmup_s"] = timed_generate(torch, model, input_ids, attention_mask, warm)
        run["compiled"] = False
    # Timed: the full length first (while the static cache has its full size), then one token.
    run["time_s"] = timed_generate(torch, model, input_ids, attention_mask, full)
    run["time_1_s"] = timed_generate(torch, model, input_ids, attention_mask, one)
    run["tokens_per_s"] = batch * args.new_tokens / run["time_s"]
    run["ms_per_step"] = (run["time_s"] - run["time_1_s"]) / (args.new_tokens - 1) * 1e3
    run["prefill_ms"] = run["time_1_s"] * 1e3
    run["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    return run


def main():
    args = parse_args()
    started = time.time()
    document = {"tool": "hf_decode.py", "command": " ".join(sys.argv), "prompt": args.prompt,
                "new_tokens": args.new_tokens,
                "tokens_per_s_definition": "batch x new_tokens / wall time of generate(), prefill included",
                "ms_per_step_definition": "(time(new_tokens) - time(1)) / (new_tokens - 1)",
                "runs": []}
    try:
        import torch
        import transformers
    except ImportError as error:
        document["error"] = f"PyTorch or transformers is not available: {error}"
        save(args.json, document)
        log(document["error"])
        return 1
    if not torch.cuda.is_available():
        document["error"] = "no CUDA device visible to PyTorch"
        save(args.json, document)
        log(document["error"])
        return 1
    document["device"] = {"name": torch.cuda.get_device_name(0), "torch": torch.__version__,
                          "transformers": transformers.__version__, "cuda": torch.version.cuda}
    log(f"{document['device']['name']}, torch {torch.__version__}, transformers {transformers.__version__}")

    build_start = time.perf_counter()
    try:
        model, document["model"] = build_model(torch, transformers, args.layers)
    except Exception as error:  # e.g. out of memory, or an API this script does not know
        traceback.print_exc()
        document["error"] = f"building the model failed: {type(error).__name__}: {str(error)[:500]}"
        if not (args.merge and os.path.exists(args.json)):
            save(args.json, document)
        log(document["error"])
        return 1
    document["model_build_s"] = time.perf_counter() - build_start
    log(f"model: {document['model']['params'] / 1e9:.2f} B parameters, "
        f"{document['model']['weight_bytes'] / 2**30:.1f} GiB bf16, attention "
        f"{document['model']['attn_implementation']}, built in {document['model_build_s']:.1f} s")
    kept = earlier_runs(args.json, document) if args.merge else []
    if kept:
        log(f"merging with {len(kept)} earlier run(s) in {args.json}")

    def save_merged():
        save(args.json, dict(document, runs=merge_runs(kept, document)) if kept else document)
    save_merged()

    plan = [("eager", b) for b in args.batch_sizes] + [("static", b) for b in args.static_batch_sizes]
    failed = False
    for index, (mode, batch) in enumerate(plan, start=1):
        elapsed = time.time() - started
        if args.time_limit and elapsed > args.time_limit:
            document["runs"].append({"mode": mode, "batch": batch, "error": "skipped: time limit"})
            log(f"[{index}/{len(plan)}] {mode} batch {batch}: skipped (time limit {args.time_limit:.0f} s)")
            save_merged()
            continue
        log(f"[{index}/{len(plan)} +{elapsed:.0f}s] {mode} batch {batch} ...")
        torch.cuda.reset_peak_memory_stats()
        try:
            run = run_one(torch, transformers, model, mode, batch, args)
            log(f"[{index}/{len(plan)}] {mode} batch {batch}: {run['tokens_per_s']:.1f} tokens/s, "
                f"{run['ms_per_step']:.2f} ms/step, prefill {run['prefill_ms']:.1f} ms")
        except torch.cuda.OutOfMemoryError:
            run = {"mode": mode, "batch": batch, "error": "out of memory"}
            log(f"[{index}/{len(plan)}] {mode} batch {batch}: out of memory")
        except Exception as error:  # a failed compile or generate: recorded, the others still run
            run = {"mode": mode, "batch": batch, "error": f"{type(error).__name__}: {str(error)[:500]}"}
            traceback.print_exc()
            log(f"[{index}/{len(plan)}] {mode} batch {batch}: failed ({run['error'][:200]})")
            failed = True
        document["runs"].append(run)
        document["total_s"] = time.time() - started
        save_merged()
        free_cache(torch, model)
    log(f"wrote {args.json} ({time.time() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
