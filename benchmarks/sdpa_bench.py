#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the decode shapes of servelab_bench_attention.

The comparison point for servelab's PagedAttention: bf16, 32 query heads, 8 KV heads, head_dim
128, one query token per sequence, each sequence's keys and values contiguous
([batch, kv_heads, context, head_dim]). Variants:
  gqa_default    enable_gqa=True, PyTorch picks the backend (what a user gets)
  gqa_flash, gqa_efficient, gqa_cudnn   enable_gqa=True restricted to one backend
  expanded_default  keys/values repeated to 32 heads beforehand (repeat_interleave; the repeat is
                    not timed), the way attention was written before enable_gqa existed
"best" is the fastest variant that ran. Time is the median of CUDA-event timings of back-to-back
calls (replayed as a CUDA graph) after a warm-up; GB/s counts the same bytes as servelab_bench_attention (keys and values of
every context token + queries + outputs), whatever a variant actually reads. Small shapes rotate
through copies of the cache spanning 4x the L2 cache, so that they are timed from HBM.

usage: sdpa_bench.py --json FILE [--quick] [--batch-sizes 1,4,..] [--contexts 512,..]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM = 32, 8, 128
BYTES_PER_ELEMENT = 2  # bf16


def int_list(text):
    return [int(item) for item in text.split(",") if item]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="where the results go")
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--batch-sizes", type=int_list, default=None)
    parser.add_argument("--contexts", type=int_list, default=None)
    args = parser.parse_args()
    if args.batch_sizes is None:
        args.batch_sizes = [1, 16, 64] if args.quick else [1, 4, 16, 32, 64, 128]
    if args.contexts is None:
        args.contexts = [1024, 4096] if args.quick else [512, 1024, 2048, 4096, 8192]
    return args


def save(path, document):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(temporary, path)


def time_calls(torch, call, sets, measurements):
    """Median milliseconds per call, and how it was timed. After a warm-up, one plain timing sizes
    an inner loop of about a millisecond that visits every set; the loop is captured into a CUDA
    graph whose replays are timed (so that Python's launch overhead does not count, as
    servelab_bench_attention does). Where capture fails, the loop is timed as plain calls."""
    for i in range(3):
        call(i % sets)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call(0)
    stop.record()
    stop.synchronize()
    single_ms = max(start.elapsed_time(stop), 1e-4)
    inner = max(sets, min(2000, math.ceil(1.0 / single_ms)))

    graph, graph_error = None, None
    try:
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            for i in range(inner):
                call(i % sets)
        graph = captured
    except Exception as error:  # a backend that cannot be captured: plain calls instead
        graph_error = str(error).split("\n")[0][:200]
        torch.cuda.synchronize()

    times = []
    if graph is not None:
        graph.replay()
        torch.cuda.synchronize()
    for _ in range(measurements):
        start.record()
        if graph is not None:
            graph.replay()
        else:
            for i in range(inner):
                call(i % sets)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / inner)
    del graph
    return statistics.median(times), {"inner": inner, "cuda_graph": graph_error is None,
                                      **({"graph_error": graph_error} if graph_error else {})}


def main():
    args = parse_args()
    document = {"tool": "sdpa_bench.py", "command": " ".join(sys.argv), "results": []}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as error:
        document["error"] = f"PyTorch is not available: {error}"
        save(args.json, document)
        print(f"sdpa: {document['error']}", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        document["error"] = "no CUDA device visible to PyTorch"
        save(args.json, document)
        print(f"sdpa: {document['error']}", file=sys.stderr)
        return 1

    properties = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(properties, "L2_cache_size", 50 * 2**20)
    rotation_bytes = 4 * l2_bytes
    document["device"] = {"name": properties.name, "torch": torch.__version__,
                          "cuda": torch.version.cuda, "l2_bytes": l2_bytes}
    measurements = 10 if args.quick else 15

    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        backends["cudnn"] = SDPBackend.CUDNN_ATTENTION

    probe = torch.zeros(1, NUM_HEADS, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    probe_kv = torch.zeros(1, NUM_KV_HEADS, 4, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    try:
        F.scaled_dot_product_attention(probe, probe_kv, probe_kv, enable_gqa=True)
        has_gqa = True
    except TypeError:
        has_gqa = False
    document["config"] = {
        "dtype": "bf16", "num_heads": NUM_HEADS, "num_kv_heads": NUM_KV_HEADS,
        "head_dim": HEAD_DIM, "query_len": 1, "kv_layout": "contiguous [batch, kv_heads, context, head_dim]",
        "enable_gqa": has_gqa, "rotation_bytes": rotation_bytes,
        "bytes_counted": "K and V of every context token + queries + outputs",
        "timing": "median of CUDA-event timings of a CUDA graph of back-to-back calls, after warm-up",
    }
    if not has_gqa:
        print("sdpa: this PyTorch has no enable_gqa; only the repeat_interleave variant runs", flush=True)
    print(f"sdpa: {properties.name}, torch {torch.__version__}; "
          f"{len(args.batch_sizes)} batch sizes x {len(args.contexts)} contexts", flush=True)

    scale = 1.0 / math.sqrt(HEAD_DIM)
    for batch in args.batch_sizes:
        for context in args.contexts:
            kv_bytes = batch * context * NUM_KV_HEADS * HEAD_DIM * BYTES_PER_ELEMENT * 2
            query_bytes = batch * NUM_HEADS * HEAD_DIM * BYTES_PER_ELEMENT
            total_bytes = kv_bytes + 2 * query_bytes
            sets = max(1, math.ceil(rotation_bytes / kv_bytes))
            entry = {"batch": batch, "context": context, "bytes": total_bytes, "sets": sets, "variants": {}}
            try:
                query = torch.randn(batch, NUM_HEADS, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
                keys = [torch.randn(batch, NUM_KV_HEADS, context, HEAD_DIM, device="cuda",
                                    dtype=torch.bfloat16) for _ in range(sets)]
                values = [torch.randn_like(k) for k in keys]
                variants = {}
                if has_gqa:
                    def gqa(s):
                        return F.scaled_dot_product_attention(query, keys[s], values[s], scale=scale,
                                                              enable_gqa=True)
                    variants["gqa_default"] = (gqa, None)
                    for name, backend in backends.items():
                        variants[f"gqa_{name}"] = (gqa, backend)
                for name, (call, backend) in variants.items():
                    try:
                        if backend is None:
                            ms, how = time_calls(torch, call, sets, measurements)
                        else:
                            with sdpa_kernel([backend]):
                                ms, how = time_calls(torch, call, sets, measurements)
                        entry["variants"][name] = {"us": ms * 1e3, "gbps": total_bytes / (ms * 1e-3) / 1e9,
                                                   **how}
                    except (RuntimeError, ValueError) as error:  # backend refuses the shape
                        entry["variants"][name] = {"error": str(error).split("\n")[0][:300]}
                # The pre-enable_gqa way: keys and values repeated to every query head (4x the
                # memory; skipped where that would not fit comfortably).
                free_bytes, _ = torch.cuda.mem_get_info()
                if 4 * kv_bytes * sets < 0.5 * free_bytes:
                    keys_expanded = [k.repeat_interleave(NUM_HEADS // NUM_KV_HEADS, dim=1) for k in keys]
                    values_expanded = [v.repeat_interleave(NUM_HEADS // NUM_KV_HEADS, dim=1) for v in values]

                    def expanded(s):
                        return F.scaled_dot_product_attention(query, keys_expanded[s], values_expanded[s],
                                                              scale=scale)
                    ms, how = time_calls(torch, expanded, sets, measurements)
                    entry["variants"]["expanded_default"] = {
                        "us": ms * 1e3, "gbps": total_bytes / (ms * 1e-3) / 1e9, **how}
                    keys_expanded = values_expanded = None  # free before the next shape
                else:
                    entry["variants"]["expanded_default"] = {"error": "skipped: 4x the cache would not fit"}
                keys = values = query = None
            except torch.cuda.OutOfMemoryError:
                entry["error"] = "out of memory"
            torch.cuda.empty_cache()
            timed = {name: v for name, v in entry["variants"].items() if "us" in v}
            if timed:
                best = min(timed, key=lambda name: timed[name]["us"])
                entry["best"] = {"variant": best, **timed[best]}
            document["results"].append(entry)
            save(args.json, document)
            shown = "  ".join(f"{name} {v['us']:.1f}us" for name, v in timed.items())
            best_text = (f"best {entry['best']['variant']} {entry['best']['gbps']:.0f} GB/s"
                         if "best" in entry else entry.get("error", "nothing ran"))
            print(f"sdpa: batch {batch:4d} ctx {context:5d}  {best_text}  ({shown})", flush=True)

    save(args.json, document)
    print(f"sdpa: wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    started = time.time()
    status = main()
    print(f"sdpa: {time.time() - started:.0f} s", flush=True)
    sys.exit(status)
