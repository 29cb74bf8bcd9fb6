#!/usr/bin/env python3
"""Turns the raw JSON of benchmarks/run_all.sh into the committed report.

Reads from --raw (one or more folders; for each file the first folder that has it wins):
  meta.json           device, driver, versions, the commands run_all.sh used
  ceilings.json       servelab_bench_ceilings: copy/read bandwidth, bf16 GEMM TFLOP/s
  attention.json      servelab_bench_attention: PagedAttention decode v1 and v2
  sdpa.json           sdpa_bench.py: PyTorch scaled_dot_product_attention on the same shapes
  hf_decode.json      hf_decode.py: transformers eager and static-cache decode
  model_decode.json   servelab_bench_model decode
  model_prefill.json  servelab_bench_model prefill
  swap.json           servelab_bench_swap: KV block swaps GPU <-> pinned host vs the host link
Writes into --out (default benchmarks/results):
  <date>-<gpu>.md, <date>-<gpu>-decode.png, <date>-<gpu>-attention.png, <date>-<gpu>-swap.png,
  raw/<date>-<gpu>/*.json
Missing inputs leave their sections marked "not measured"; missing matplotlib skips the plots
(with a note) but not the report. Needs only the standard library (and matplotlib for plots).

usage: report.py --raw DIR [--raw DIR2] [--out benchmarks/results] [--date YYYY-MM-DD]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import sys

INPUTS = ["meta.json", "ceilings.json", "attention.json", "sdpa.json", "hf_decode.json",
          "model_decode.json", "model_prefill.json", "swap.json", "model_swapstep.json"]

# The floors servelab's CUDA engine is held to (issue 4).
FLOOR_BATCH1_FRACTION = 0.85      # batch-1 decode: achieved GB/s / copy bandwidth
FLOOR_BATCH64_VS_HF_STATIC = 3.0  # batch-64 decode tokens/s: servelab / HF static cache
FLOOR_ATTENTION_FRACTION = 0.75   # PagedAttention at ctx >= 2048, batch >= 16: GB/s / copy BW
FLOOR_PREFILL_FRACTION = 0.60     # prefill TFLOP/s / the GEMM ceiling


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", action="append", required=True, help="folder of raw JSON (repeatable)")
    parser.add_argument("--out", default="benchmarks/results", help="where the report goes")
    parser.add_argument("--date", default=None, help="date in the file names (default: meta.json's, else today)")
    return parser.parse_args()


def load_inputs(raw_dirs):
    data, sources = {}, {}
    for name in INPUTS:
        for folder in raw_dirs:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                try:
                    with open(path) as f:
                        data[name] = json.load(f)
                    sources[name] = path
                except (OSError, json.JSONDecodeError) as error:
                    print(f"report: cannot read {path}: {error}", file=sys.stderr)
                break
    return data, sources


def slug(text):
    text = re.sub(r"(?i)\bnvidia\b", "", text or "unknown-gpu").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown-gpu"


def number(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float) and value != value:  # NaN
        return "–"
    if abs(value) >= 100 or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def percent(value):
    return "–" if value is None else f"{100 * value:.0f}%"


def ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def device_name(data):
    for name in ("meta.json", "ceilings.json", "attention.json"):
        document = data.get(name) or {}
        value = document.get("gpu_name") or (document.get("device") or {}).get("name")
        if value and value != "unknown GPU":  # run_all.sh's name where nvidia-smi failed
            return value
    for name in ("model_decode.json", "model_prefill.json", "hf_decode.json", "sdpa.json", "swap.json"):
        device = (data.get(name) or {}).get("device")
        if isinstance(device, str) and device:
            return device
        if isinstance(device, dict) and device.get("name"):
            return device["name"]
    return "unknown GPU"


# ---- what the numbers mean ------------------------------------------------------------------

class Facts:
    """The values the tables and floors need, each None where not measured."""

    def __init__(self, data):
        ceilings = data.get("ceilings.json") or {}
        self.copy_gbps = ceilings.get("copy_bandwidth_gbps")
        self.read_gbps = ceilings.get("read_bandwidth_gbps")
        self.gemm_tflops = ceilings.get("gemm_tflops")

        self.ours_decode = {}  # batch -> entry
        for entry in (data.get("model_decode.json") or {}).get("decode", []) or []:
            self.ours_decode[int(entry["batch"])] = entry
        self.hf = {"eager": {}, "static": {}}
        hf = data.get("hf_decode.json") or {}
        for run in hf.get("runs", []) or []:
            if run.get("mode") in self.hf:
                self.hf[run["mode"]][int(run["batch"])] = run
        self.hf_error = hf.get("error")
        prefill = (data.get("model_prefill.json") or {}).get("prefill")
        self.prefill = prefill if isinstance(prefill, dict) else None

        self.attention = {}  # (batch, context) -> servelab entry
        attention = data.get("attention.json") or {}
        for entry in attention.get("results", []) or []:
            self.attention[(int(entry["batch"]), int(entry["context"]))] = entry
        self.attention_error = attention.get("error")
        self.sdpa = {}
        sdpa = data.get("sdpa.json") or {}
        for entry in sdpa.get("results", []) or []:
            self.sdpa[(int(entry["batch"]), int(entry["context"]))] = entry
        self.sdpa_error = sdpa.get("error")

    @staticmethod
    def timed(entry, key):
        value = (entry or {}).get(key) or {}
        return value if isinstance(value, dict) and value.get("us") is not None and not value.get("error") else None

    def best_ours(self, key):
        """servelab's better PagedAttention version at a shape: (name, {us, gbps}) or None."""
        entry = self.attention.get(key)
        versions = [(name, self.timed(entry, name)) for name in ("v1", "v2")]
        versions = [(name, v) for name, v in versions if v]
        return min(versions, key=lambda item: item[1]["us"]) if versions else None

    def sdpa_best(self, key):
        best = (self.sdpa.get(key) or {}).get("best")
        return best if best and best.get("us") is not None else None

    def tokens_per_s(self, source, batch):
        entry = self.ours_decode.get(batch) if source == "servelab" else self.hf[source].get(batch)
        if not entry or entry.get("error"):
            return None
        return entry.get("tokens_per_s")

    def ms_per_step(self, source, batch):
        entry = self.ours_decode.get(batch) if source == "servelab" else self.hf[source].get(batch)
        if not entry or entry.get("error"):
            return None
        return entry.get("ms_per_step")


def floors(facts):
    """Rows: (floor, target, measured, verdict)."""
    rows = []

    def verdict(ok):
        return "n/a" if ok is None else ("**PASS**" if ok else "**MISS**")

    # 1. batch-1 decode moves the weights at >= 85% of copy bandwidth.
    entry = facts.ours_decode.get(1)
    fraction = None
    if entry and facts.copy_gbps and entry.get("achieved_gbps") is not None:
        fraction = entry["achieved_gbps"] / facts.copy_gbps
    rows.append(("batch-1 decode bandwidth", f"≥ {percent(FLOOR_BATCH1_FRACTION)} of copy BW",
                 f"{percent(fraction)} ({number(entry.get('achieved_gbps') if entry else None)} GB/s)"
                 if fraction is not None else "not measured",
                 verdict(None if fraction is None else fraction >= FLOOR_BATCH1_FRACTION)))

    # 2. batch-64 decode >= 3x HF with a static cache.
    ours, theirs = facts.tokens_per_s("servelab", 64), facts.tokens_per_s("static", 64)
    speedup = ours / theirs if ours and theirs else None
    rows.append(("batch-64 decode vs HF static", f"≥ {FLOOR_BATCH64_VS_HF_STATIC:.0f}× tokens/s",
                 f"{ratio(speedup)} ({number(ours)} vs {number(theirs)} tokens/s)" if speedup else "not measured",
                 verdict(None if speedup is None else speedup >= FLOOR_BATCH64_VS_HF_STATIC)))

    # 3. PagedAttention at ctx >= 2048 and batch >= 16: >= 75% of copy BW and no slower than SDPA.
    fractions, slowdowns = [], []
    for key in sorted(facts.attention):
        batch, context = key
        if context < 2048 or batch < 16:
            continue
        best = facts.best_ours(key)
        if best is None:
            fractions.append((None, key))
            continue
        if facts.copy_gbps:
            fractions.append((best[1]["gbps"] / facts.copy_gbps, key))
        sdpa = facts.sdpa_best(key)
        if sdpa:
            slowdowns.append((best[1]["us"] / sdpa["us"], key))
    if fractions and all(f is not None for f, _ in fractions):
        worst_fraction, worst_key = min(fractions)
        worst_slowdown = max(slowdowns) if slowdowns else None
        ok = worst_fraction >= FLOOR_ATTENTION_FRACTION and (worst_slowdown is None or worst_slowdown[0] <= 1.0)
        measured = f"worst {percent(worst_fraction)} of copy BW (batch {worst_key[0]}, ctx {worst_key[1]})"
        if worst_slowdown:
            measured += (f"; worst time vs SDPA {ratio(worst_slowdown[0])} "
                         f"(batch {worst_slowdown[1][0]}, ctx {worst_slowdown[1][1]})")
        else:
            # The "no slower than SDPA" half cannot be judged: only a bandwidth miss is a verdict.
            measured += "; SDPA not measured"
            ok = False if worst_fraction < FLOOR_ATTENTION_FRACTION else None
        rows.append(("PagedAttention, ctx ≥ 2048 & batch ≥ 16",
                     f"≥ {percent(FLOOR_ATTENTION_FRACTION)} of copy BW and ≤ 1.00× SDPA's time",
                     measured, verdict(ok)))
    else:
        failed = [key for f, key in fractions if f is None]
        rows.append(("PagedAttention, ctx ≥ 2048 & batch ≥ 16",
                     f"≥ {percent(FLOOR_ATTENTION_FRACTION)} of copy BW and ≤ 1.00× SDPA's time",
                     f"failed at {failed}" if failed else "not measured",
                     verdict(False if failed else None)))

    # 4. prefill >= 60% of the GEMM ceiling.
    fraction = None
    if facts.prefill and facts.gemm_tflops and facts.prefill.get("tflops") is not None:
        fraction = facts.prefill["tflops"] / facts.gemm_tflops
    rows.append(("prefill throughput", f"≥ {percent(FLOOR_PREFILL_FRACTION)} of GEMM ceiling",
                 f"{percent(fraction)} ({number(facts.prefill['tflops'])} TFLOP/s)" if fraction is not None
                 else "not measured",
                 verdict(None if fraction is None else fraction >= FLOOR_PREFILL_FRACTION)))
    return rows


# ---- sections -------------------------------------------------------------------------------

def section_header(data, date, gpu):
    meta = data.get("meta.json") or {}
    ceilings = data.get("ceilings.json") or {}
    device = ceilings.get("device") or {}
    lines = [f"# servelab benchmarks: {gpu}, {date}", ""]
    facts = [
        ("GPU", gpu + (f" ({device['sm_count']} SMs, {device.get('total_memory_bytes', 0) / 2**30:.0f} GiB, "
                       f"L2 {device.get('l2_bytes', 0) / 2**20:.0f} MiB)" if device.get("sm_count") else "")),
        ("driver", meta.get("driver_version")),
        ("CUDA (driver / toolkit)", " / ".join(str(x) for x in (meta.get("cuda_driver_api"), meta.get("nvcc_version")) if x)),
        ("PyTorch / transformers", " / ".join(str(x) for x in (meta.get("torch_version"), meta.get("transformers_version")) if x)),
        ("servelab commit", meta.get("commit")),
        ("measured", meta.get("started_utc")),
    ]
    for key, value in facts:
        if value:
            lines.append(f"- **{key}**: {value}")
    lines.append("")
    return lines


def section_commands(data, sources):
    meta = data.get("meta.json") or {}
    lines = ["## How these numbers were made", "",
             "On the GPU machine, from the repository root: `scripts/gpu_check.sh` (see "
             "`benchmarks/README.md`), which runs `benchmarks/run_all.sh`; the commands it ran:", "",
             "```"]
    commands = meta.get("commands") or {}
    for name in ("ceilings", "attention", "sdpa", "model-decode", "model-prefill", "swap", "hf"):
        if name in commands:
            lines.append(commands[name])
    for name in INPUTS[1:]:
        command = (data.get(name) or {}).get("command")
        if command and not any(command in c for c in commands.values()):
            lines.append(command)
    lines += ["```", "", "Raw results: " + ", ".join(f"`{os.path.basename(p)}`" for p in sources.values()), ""]
    return lines


def section_ceilings(data):
    ceilings = data.get("ceilings.json")
    lines = ["## Ceilings (`servelab_bench_ceilings`)", ""]
    if not ceilings or ceilings.get("error"):
        return lines + ["Not measured." + (f" ({ceilings['error']})" if ceilings else ""), ""]
    bandwidth = ceilings.get("bandwidth") or {}
    device = ceilings.get("device") or {}
    rows = []
    for key, label in (("memcpy_d2d", "cudaMemcpyAsync device → device"), ("copy_kernel", "copy kernel (16-byte vectors)"),
                       ("read_kernel", "read-only kernel (16-byte vectors)")):
        entry = bandwidth.get(key)
        if entry:
            rows.append((label, f"{number(entry['gbps'], 0)} GB/s", entry.get("bytes_counted", ""),
                         f"{entry.get('ms', 0):.3f} ms"))
    if device.get("theoretical_gbps"):
        rows.append(("datasheet peak (2 × memory clock × bus width)", f"{number(device['theoretical_gbps'], 0)} GB/s", "", ""))
    lines.append(f"Buffer: {bandwidth.get('buffer_bytes', 0) / 2**30:.1f} GiB. **Copy bandwidth**, the "
                 "yardstick below, is the memcpy figure.")
    lines.append("")
    lines.append(table(["memory", "bandwidth", "bytes counted", "median time"], rows))
    lines.append("")
    rows = [(g["name"], f"{g['m']} × {g['n']} × {g['k']}", f"{g['ms']:.3f}", f"{number(g['tflops'])}")
            for g in ceilings.get("gemm", [])]
    lines.append("bf16 GEMM through cuBLAS (`cublasGemmEx`, fp32 accumulation; out[m,n] = x[m,k] · W[n,k]ᵀ). "
                 f"**GEMM ceiling** = the best: {number(ceilings.get('gemm_tflops'))} TFLOP/s.")
    lines.append("")
    lines.append(table(["shape", "m × n × k", "ms", "TFLOP/s"], rows))
    lines.append("")
    return lines


def section_decode(facts, data):
    lines = ["## Decode: servelab vs Hugging Face transformers", ""]
    batches = sorted(set(facts.ours_decode) | set(facts.hf["eager"]) | set(facts.hf["static"]))
    if not batches:
        reasons = [r for r in (facts.hf_error,) if r]
        return lines + ["Not measured." + (f" ({'; '.join(reasons)})" if reasons else ""), ""]
    hf = data.get("hf_decode.json") or {}
    model = (data.get("model_decode.json") or {}).get("model") or hf.get("model") or {}
    prompt = hf.get("prompt", 128)
    new_tokens = hf.get("new_tokens", 256)
    lines.append(f"Llama-3-8B shape ({model.get('layers', 32)} layers, hidden {model.get('hidden', 4096)}, "
                 f"{model.get('heads', 32)}/{model.get('kv_heads', 8)} heads, vocabulary {model.get('vocab', 128256)}), "
                 f"random bf16 weights, {prompt}-token prompts, {new_tokens} new tokens per sequence, greedy. "
                 "tokens/s = batch × new tokens / wall time, **prefill included** (for both); ms/step excludes it "
                 "((time(256) − time(1)) / 255). HF static = `cache_implementation=\"static\"`, "
                 "timed after a warm-up generate() that compiles it.")
    lines.append("")
    rows = []
    for batch in batches:
        ours = facts.tokens_per_s("servelab", batch)
        eager = facts.tokens_per_s("eager", batch)
        static = facts.tokens_per_s("static", batch)

        def cell(source, value):
            entry = facts.ours_decode.get(batch) if source == "servelab" else facts.hf[source].get(batch)
            if entry and entry.get("error"):
                return entry["error"][:40]
            return number(value)
        rows.append((batch, cell("servelab", ours), number(facts.ms_per_step("servelab", batch), 2),
                     cell("eager", eager), number(facts.ms_per_step("eager", batch), 2),
                     cell("static", static), number(facts.ms_per_step("static", batch), 2),
                     ratio(ours / eager) if ours and eager else "–",
                     ratio(ours / static) if ours and static else "–"))
    lines.append(table(["batch", "servelab tok/s", "ms/step", "HF eager tok/s", "ms/step",
                        "HF static tok/s", "ms/step", "servelab / eager", "servelab / static"], rows))
    lines.append("")
    compiled = [(b, r) for b, r in sorted(facts.hf["static"].items()) if "warmup_s" in r]
    if compiled:
        lines.append("HF static warm-up (compile) time: " + ", ".join(
            f"batch {b}: {r['warmup_s']:.0f} s (compiled: {'yes' if r.get('compiled') else 'no'})" for b, r in compiled) + ".")
        lines.append("")
    return lines


def section_batch1(facts):
    lines = ["## Batch-1 decode against memory bandwidth", ""]
    entry = facts.ours_decode.get(1)
    if not entry or entry.get("error"):
        return lines + ["Not measured.", ""]
    achieved = entry.get("achieved_gbps")
    rows = [(number(entry.get("bytes_per_step", 0) / 1e9, 2) + " GB", number(entry.get("ms_per_step"), 2),
             f"{number(achieved, 0)} GB/s",
             percent(achieved / facts.copy_gbps) if achieved and facts.copy_gbps else "–",
             percent(achieved / facts.read_gbps) if achieved and facts.read_gbps else "–")]
    lines.append("A decode step at batch 1 must read every weight and the KV cache once; bytes/step is "
                 "what servelab_bench_model counts, achieved GB/s = bytes/step ÷ time/step.")
    lines.append("")
    lines.append(table(["bytes/step", "ms/step", "achieved", "of copy BW", "of read BW"], rows))
    lines.append("")
    return lines


def section_attention(facts):
    lines = ["## PagedAttention decode vs PyTorch SDPA", ""]
    if not facts.attention:
        return lines + ["Not measured." + (f" ({facts.attention_error})" if facts.attention_error else ""), ""]
    lines.append("bf16, 32 query heads / 8 KV heads, head_dim 128, one query per sequence; servelab's cache "
                 "is paged (blocks of 16, shuffled block tables), SDPA's is contiguous. GB/s counts keys and "
                 "values of every context token + queries + outputs for both. SDPA = its fastest variant "
                 "(`sdpa.json` lists each). \"vs SDPA\" = servelab's better version's time ÷ SDPA's "
                 "(below 1 is faster).")
    if facts.attention_error:
        lines += ["", f"servelab_bench_attention stopped early: {facts.attention_error}"]
    lines.append("")
    rows = []
    for key in sorted(facts.attention):
        entry = facts.attention[key]
        v1, v2 = Facts.timed(entry, "v1"), Facts.timed(entry, "v2")
        best = facts.best_ours(key)
        sdpa = facts.sdpa_best(key)

        def pair(v, name):
            if v:
                return number(v["us"]), number(v["gbps"], 0)
            error = (entry.get(name) or {}).get("error", "")
            return ("error" if error else "–"), "–"
        v1_us, v1_gbps = pair(v1, "v1")
        v2_us, v2_gbps = pair(v2, "v2")
        rows.append((key[0], key[1], v1_us, v1_gbps, v2_us, v2_gbps,
                     number(sdpa["us"]) if sdpa else "–", number(sdpa["gbps"], 0) if sdpa else "–",
                     sdpa["variant"] if sdpa else "–",
                     percent(best[1]["gbps"] / facts.copy_gbps) if best and facts.copy_gbps else "–",
                     ratio(best[1]["us"] / sdpa["us"]) if best and sdpa else "–"))
    lines.append(table(["batch", "context", "v1 µs", "v1 GB/s", "v2 µs", "v2 GB/s", "SDPA µs", "SDPA GB/s",
                        "SDPA variant", "best of copy BW", "vs SDPA"], rows))
    lines.append("")
    # The benchmark's own sanity check: both versions' outputs on the same inputs (bf16 outputs of
    # values in [-1, 1): a few bf16 steps of difference are rounding, more is a bug).
    diffs = [e.get("max_abs_diff_v1_v2") for e in facts.attention.values() if e.get("max_abs_diff_v1_v2") is not None]
    not_finite = [(b, c) for (b, c), e in sorted(facts.attention.items())
                  if Facts.timed(e, "v1") and Facts.timed(e, "v2") and e.get("outputs_finite") is False]
    if diffs:
        verdict = "within bf16 rounding" if max(diffs) <= 0.05 else "**more than rounding: check the kernels**"
        lines.append(f"Largest |v1 − v2| over all shapes: {max(diffs):.3g} ({verdict}).")
    if not_finite:
        lines.append(f"**Non-finite outputs** at (batch, context) {not_finite}.")
    if diffs or not_finite:
        lines.append("")
    return lines


def section_prefill(facts):
    lines = ["## Prefill", ""]
    if not facts.prefill:
        return lines + ["Not measured.", ""]
    p = facts.prefill
    rows = [(p.get("tokens"), number(p.get("ms"), 1), number(p.get("tokens_per_s"), 0), number(p.get("tflops")),
             percent(p["tflops"] / facts.gemm_tflops) if p.get("tflops") and facts.gemm_tflops else "–")]
    lines.append("One sequence's prompt through the whole model; FLOPs as servelab_bench_model counts them.")
    lines.append("")
    lines.append(table(["tokens", "ms", "tokens/s", "TFLOP/s", "of GEMM ceiling"], rows))
    lines.append("")
    return lines


def swap_rows(swap):
    """{(block_size, pattern, method): {"out": entry, "in": entry}} from swap.json's "swap" list
    (files from before the zero-copy kernel have no "method": all theirs are "memcpy")."""
    rows = {}
    for entry in swap.get("swap", []) or []:
        key = (int(entry["block_size"]), entry["pattern"], entry.get("method", "memcpy"))
        rows.setdefault(key, {})[entry["direction"]] = entry
    return rows


def section_swap(data, facts):
    lines = ["## KV swaps: GPU ↔ pinned host (`servelab_bench_swap`)", ""]
    swap = data.get("swap.json")
    if not swap or swap.get("error"):
        return lines + ["Not measured." + (f" ({swap['error']})" if swap else ""), ""]
    kv = swap.get("kv") or {}
    link = swap.get("link") or {}
    h2d = (link.get("host_to_device") or {}).get("gbps")
    d2h = (link.get("device_to_host") or {}).get("gbps")
    lines.append(f"Llama-3-8B KV cache ({kv.get('layers', 32)} layers, {kv.get('kv_heads', 8)} KV heads, "
                 f"head_dim {kv.get('head_dim', 128)}, {kv.get('dtype', 'bf16')}: "
                 f"{kv.get('bytes_per_token', 131072) / 1024:.0f} KiB per token) moved through the cache engine "
                 f"(`CudaBackend::swap_blocks`, on a stream of its own; *memcpy*: per layer, keys and values, one "
                 f"`cudaMemcpyAsync` per run of consecutive blocks; *kernel*: per layer, one zero-copy kernel "
                 f"reading or writing the mapped pinned host memory), {swap.get('bytes_per_direction', 0) / 2**30:.2f} GiB "
                 "per direction. *Shuffled*: random blocks on both sides, for memcpy one copy per block, layer and "
                 "keys/values (what a block manager's free lists give); *consecutive*: for memcpy one copy per "
                 "layer and keys/values (its best case). Time = host wall clock from the call to the end of "
                 "`synchronize()` (issuing the copies included); median after a warm-up.")
    lines.append("")
    lines.append(f"**Host-link ceiling** (one {link.get('buffer_bytes', 0) / 2**30:.2f} GiB `cudaMemcpyAsync`, "
                 f"pinned host memory): host → device {number(h2d)} GB/s, device → host {number(d2h)} GB/s.")
    lines.append("")
    rows = []
    for (block_size, pattern, method), entry in sorted(
            swap_rows(swap).items(), key=lambda item: (item[0][0], item[0][1] != "shuffled", item[0][2] != "memcpy")):
        out, into = entry.get("out") or {}, entry.get("in") or {}
        block_bytes = out.get("block_bytes") or into.get("block_bytes") or 0
        rows.append((block_size, f"{block_bytes / 2**20:.2f}", pattern, method,
                     number(out.get("gbps")), percent(out.get("of_link")),
                     number(into.get("gbps")), percent(into.get("of_link")),
                     number(out.get("memcpy_calls") or into.get("memcpy_calls") or 0, 0),
                     number(out.get("kernel_launches") or into.get("kernel_launches") or 0, 0)))
    lines.append(table(["block size", "block (MiB)", "pattern", "method", "swap-out GB/s", "of D→H link",
                        "swap-in GB/s", "of H→D link", "cudaMemcpyAsync calls", "kernel launches"], rows))
    lines.append("")
    copies = swap.get("copy") or []
    if copies:
        rows = [(c["block_size"], number(c.get("gbps")),
                 percent(c["gbps"] / facts.copy_gbps) if c.get("gbps") and facts.copy_gbps else "–",
                 f"{c.get('ms', 0):.2f}") for c in copies]
        lines.append("Block copies inside the GPU pool (copy-on-write; one kernel for all layers; shuffled "
                     "blocks; GB/s counts bytes read + written, against the copy bandwidth of the ceilings):")
        lines.append("")
        lines.append(table(["block size", "GB/s", "of copy BW", "ms"], rows))
        lines.append("")
    sequences = swap.get("sequence_swap_in") or []
    if sequences:
        prefill = facts.prefill if facts.prefill and facts.prefill.get("tokens") == sequences[0].get("tokens") else None
        rows = []
        for entry in sequences:
            ratio_cell = "–"
            if prefill and prefill.get("ms") and entry.get("ms"):
                ratio_cell = ratio(entry["ms"] / prefill["ms"])
            rows.append((entry["block_size"], entry.get("method", "memcpy"), entry.get("blocks"),
                         f"{entry.get('bytes', 0) / 2**20:.0f} MiB",
                         f"{entry.get('ms', 0):.2f}", number(entry.get("gbps")), percent(entry.get("of_link")),
                         ratio_cell))
        tokens = sequences[0].get("tokens", 2048)
        lines.append(f"Preemption by swapping vs by recomputing: swap-in of one {tokens}-token sequence's KV "
                     "(scattered blocks) against a prefill of the same length"
                     + (f" ({number(prefill['ms'])} ms, `servelab_bench_model prefill`)." if prefill else
                        " (prefill not measured)."))
        lines.append("")
        lines.append(table(["block size", "method", "blocks", "bytes", "swap-in ms", "GB/s", "of H→D link",
                            "swap-in / prefill time"], rows))
        lines.append("")
    step = (data.get("model_swapstep.json") or {}).get("swapstep")
    if step and step.get("methods"):
        lines.append(f"A swap-in during decoding: batch-{step['batch']} decode steps of the Llama-3-8B-shaped "
                     f"model with a swap-in of {step['swap_blocks']} scattered blocks "
                     f"({step['swap_bytes'] / 2**20:.0f} MiB) issued just before each step "
                     "(`servelab_bench_model swapstep`). *Overlapped*: the engine's way, layer l's attention waits "
                     "for layer l's copies only; *serial*: the step starts after the whole swap. *Step alone*: "
                     "replayed from its CUDA graph, measured again before each row since the context grows "
                     "as the benchmark runs; *kernel, grid cap N x 2*: the swap kernel limited to N thread "
                     "blocks for keys and N for values. Medians of 16 steps.")
        lines.append("")
        rows = []
        for m in step["methods"]:
            plain = m.get("plain_step_ms", step["plain_step_ms"])
            rows.append((m["method"], f"{m['swap_alone_ms']:.2f}", f"{plain:.2f}",
                         f"{m['step_with_one_block_swap_ms']:.2f}",
                         f"{m['overlapped_step_ms']:.2f}", f"{m['serial_step_ms']:.2f}",
                         f"{m['overlapped_step_ms'] - plain:.2f}"))
        lines.append(table(["method", "swap alone ms", "step alone ms", "step + 1-block swap ms (no graph)",
                            "overlapped step ms", "serial step ms", "what the swap cost the step ms"],
                           rows))
        lines.append("")
    if swap.get("verified") is False:
        lines.append("**Swapped-out blocks did not hold the GPU blocks' bytes**: " +
                     "; ".join(swap.get("verify_failures") or []))
        lines.append("")
    return lines


# ---- plots ----------------------------------------------------------------------------------

def make_plots(facts, out_dir, stem, gpu, swap=None):
    """Returns (list of png file names, note or None)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "Plots skipped: matplotlib is not installed where this report was made."
    made = []
    batches = sorted(set(facts.ours_decode) | set(facts.hf["eager"]) | set(facts.hf["static"]))
    if batches:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for source, label, style in (("servelab", "servelab", "o-"), ("eager", "HF eager", "s--"),
                                     ("static", "HF static cache", "^--")):
            points = [(b, facts.tokens_per_s(source, b)) for b in batches]
            points = [(b, v) for b, v in points if v]
            if points:
                axes.plot([b for b, _ in points], [v for _, v in points], style, label=label)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xticks(batches)
        axes.set_xticklabels([str(b) for b in batches])
        axes.set_xlabel("batch size")
        axes.set_ylabel("tokens/s (prefill included)")
        axes.set_title(f"Llama-3-8B-shaped decode, bf16, {gpu}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        figure.tight_layout()
        name = f"{stem}-decode.png"
        figure.savefig(os.path.join(out_dir, name), dpi=120)
        plt.close(figure)
        made.append(name)
    if facts.attention:
        all_batches = sorted({b for b, _ in facts.attention})
        shown = [b for b in (1, 16, 64, 128) if b in all_batches] or all_batches[:4]
        figure, axes_grid = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4), sharey=True, squeeze=False)
        for axes, batch in zip(axes_grid[0], shown):
            contexts = sorted(c for b, c in facts.attention if b == batch)
            for label, getter, style in (
                    ("v1", lambda k: Facts.timed(facts.attention.get(k), "v1"), "o-"),
                    ("v2 (split)", lambda k: Facts.timed(facts.attention.get(k), "v2"), "s-"),
                    ("PyTorch SDPA", lambda k: facts.sdpa_best(k), "^--")):
                points = [(c, getter((batch, c))) for c in contexts]
                points = [(c, v["gbps"]) for c, v in points if v]
                if points:
                    axes.plot([c for c, _ in points], [v for _, v in points], style, label=label)
            if facts.copy_gbps:
                axes.axhline(facts.copy_gbps, color="gray", linestyle=":", label="copy bandwidth")
            axes.set_xscale("log", base=2)
            axes.set_xticks(contexts)
            axes.set_xticklabels([str(c) for c in contexts], rotation=45)
            axes.set_xlabel("context length")
            axes.set_title(f"batch {batch}")
            axes.grid(True, alpha=0.3)
        axes_grid[0][0].set_ylabel("GB/s (K + V + Q + out)")
        axes_grid[0][-1].legend(fontsize=8)
        figure.suptitle(f"Decode attention, bf16, 32/8 heads, head_dim 128, {gpu}")
        figure.tight_layout()
        name = f"{stem}-attention.png"
        figure.savefig(os.path.join(out_dir, name), dpi=120)
        plt.close(figure)
        made.append(name)
    rows = swap_rows(swap) if swap else {}
    if rows:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        block_sizes = sorted({b for b, _, _ in rows})
        methods = sorted({m for _, _, m in rows}, key=lambda m: m != "memcpy")
        colors = {("memcpy", "out"): "tab:blue", ("memcpy", "in"): "tab:orange",
                  ("kernel", "out"): "tab:green", ("kernel", "in"): "tab:red"}
        for method in methods:
            for pattern, direction, style in (
                    ("shuffled", "out", "o-"), ("shuffled", "in", "s-"),
                    ("consecutive", "out", "o--"), ("consecutive", "in", "s--")):
                points = [(b, (rows.get((b, pattern, method)) or {}).get(direction)) for b in block_sizes]
                points = [(b, e["gbps"]) for b, e in points if e and e.get("gbps") is not None]
                if points:
                    axes.plot([b for b, _ in points], [v for _, v in points], style,
                              color=colors.get((method, direction), "tab:purple"),
                              label=f"{method}: swap-{direction}, {pattern} blocks")
        link = swap.get("link") or {}
        for key, label, color in (("host_to_device", "link host → device", "tab:gray"),
                                  ("device_to_host", "link device → host", "tab:brown")):
            value = (link.get(key) or {}).get("gbps")
            if value:
                axes.axhline(value, color=color, linestyle=":", label=label)
        axes.set_xscale("log", base=2)
        axes.set_xticks(block_sizes)
        axes.set_xticklabels([str(b) for b in block_sizes])
        axes.set_ylim(bottom=0)
        axes.set_xlabel("block size (tokens)")
        axes.set_ylabel("GB/s")
        axes.set_title(f"KV swaps, Llama-3-8B KV (32 layers, bf16), {gpu}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        name = f"{stem}-swap.png"
        figure.savefig(os.path.join(out_dir, name), dpi=120)
        plt.close(figure)
        made.append(name)
    return made, None


def main():
    args = parse_args()
    data, sources = load_inputs(args.raw)
    if len(data) == 0:
        print(f"report: no raw JSON found in {args.raw}", file=sys.stderr)
        return 1
    meta = data.get("meta.json") or {}
    date = args.date or meta.get("date") or datetime.date.today().isoformat()
    gpu = device_name(data)
    gpu_slug = meta.get("gpu_slug")
    stem = f"{date}-{gpu_slug if gpu_slug and gpu_slug != 'unknown-gpu' else slug(gpu)}"
    os.makedirs(args.out, exist_ok=True)
    # What an earlier call of the same day and GPU left in the output (e.g. the device was handed
    # back between calls and the results came back through the repository) fills the gaps.
    earlier = os.path.join(args.out, "raw", stem)
    if os.path.isdir(earlier) and os.path.abspath(earlier) not in map(os.path.abspath, args.raw):
        data, sources = load_inputs(args.raw + [earlier])
        from_earlier = [name for name, path in sources.items() if path.startswith(earlier)]
        if from_earlier:
            print(f"report: from the earlier results in {earlier}: {', '.join(from_earlier)}")

    # The raw JSON is committed next to the report.
    raw_out = os.path.join(args.out, "raw", stem)
    os.makedirs(raw_out, exist_ok=True)
    for name, path in sources.items():
        destination = os.path.join(raw_out, name)
        if os.path.abspath(path) != os.path.abspath(destination):
            shutil.copyfile(path, destination)

    facts = Facts(data)
    plots, plot_note = make_plots(facts, args.out, stem, gpu, data.get("swap.json"))
    lines = section_header(data, date, gpu)
    lines += ["## Floors", "",
              "What servelab's CUDA engine must reach on this GPU (issue 4); the measured value is the "
              "one that decides.", ""]
    lines.append(table(["floor", "target", "measured", "verdict"], floors(facts)))
    lines.append("")
    lines += section_ceilings(data)
    lines += section_decode(facts, data)
    lines += section_batch1(facts)
    lines += section_attention(facts)
    lines += section_prefill(facts)
    lines += section_swap(data, facts)
    lines += ["## Plots", ""]
    lines += [f"![{name}]({name})" for name in plots] or ["No plot."]
    if plot_note:
        lines += ["", plot_note]
    lines.append("")
    lines += section_commands(data, {name: os.path.join(raw_out, name) for name in sources})
    report_path = os.path.join(args.out, f"{stem}.md")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    print(f"report: wrote {report_path}" + (f" and {', '.join(plots)}" if plots else ""))
    if plot_note:
        print(f"report: {plot_note}")
    print(f"report: raw JSON in {raw_out}")
    for row in floors(facts):
        print(f"report: floor {row[0]}: {row[3].strip('*')} ({row[2]})")
    print(f"report: stem {stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
