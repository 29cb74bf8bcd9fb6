#!/usr/bin/env python3
"""Trains servelab-stories, the project's embedded default model, from nothing but this folder.

    python3 models/servelab-stories/train.py --out models/servelab-stories

runs every step on one GPU (about 6 minutes on an H200; README.md has the measured times):

 1. writes a training corpus (story_corpus.py, seed 1) and a held-out corpus (seed 2);
 2. trains a byte-fallback BPE sentencepiece tokenizer on the training stories;
 3. trains a Llama model (GQA) with PyTorch and transformers' LlamaForCausalLM;
 4. measures held-out perplexity, and the unigram perplexity of the same text for comparison;
 5. saves a Hugging Face folder (config.json, generation_config.json, model.safetensors in bf16,
    tokenizer.model, tokenizer_config.json), reloads it with AutoModelForCausalLM and
    LlamaTokenizer, and writes training_log.csv, eval.json and loss_curve.png beside it.

Everything is seeded; the GPU's non-deterministic kernels mean a rerun matches closely, not bit
for bit.
"""

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import sentencepiece as spm
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import story_corpus  # noqa: E402  (lives beside this script)

SEPARATOR = "<|endofstory|>"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_stories(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [story.strip("\n") for story in text.split(SEPARATOR + "\n") if story.strip()]


def train_tokenizer(stories, prefix, vocab_size, threads):
    # Each story is one "sentence", newlines included, so paragraph breaks become pieces too.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(stories),
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        max_sentence_length=1 << 15,
        input_sentence_size=400_000,  # more than the corpus has: all stories are used
        shuffle_input_sentence=True,
        num_threads=threads,
        minloglevel=2,
    )
    return prefix + ".model"


def encode_stories(processor, stories, threads):
    """All stories as one token stream: BOS story EOS BOS story EOS ..., as uint16."""
    encoded = processor.encode(stories, num_threads=threads)
    total = sum(len(ids) + 2 for ids in encoded)
    stream = np.empty(total, dtype=np.uint16)
    position = 0
    for ids in encoded:
        stream[position] = processor.bos_id()
        stream[position + 1:position + 1 + len(ids)] = ids
        stream[position + 1 + len(ids)] = processor.eos_id()
        position += len(ids) + 2
    return stream


def unigram_perplexity(train_stream, heldout_stream, vocab_size):
    """Perplexity of a model that knows only token frequencies (add-one smoothed): the baseline
    that says how much of the learned model's skill is more than word counts."""
    counts = np.bincount(train_stream.astype(np.int64), minlength=vocab_size).astype(np.float64) + 1
    log_probability = np.log(counts / counts.sum())
    targets = heldout_stream[1:].astype(np.int64)  # the model never predicts the first token
    return float(math.exp(-log_probability[targets].mean()))


@torch.no_grad()
def evaluate(model, stream, context, batch_size, device, max_windows=None):
    """Mean next-token loss over non-overlapping windows of the stream (every token once)."""
    model.eval()
    windows = (len(stream) - 1) // context
    if max_windows:
        windows = min(windows, max_windows)
    data = torch.from_numpy(stream[: windows * context + 1].astype(np.int64))
    total_loss, total_tokens = 0.0, 0
    for first in range(0, windows, batch_size):
        rows = range(first, min(first + batch_size, windows))
        x = torch.stack([data[r * context:(r + 1) * context + 1] for r in rows]).to(device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total_loss += float(loss)
        total_tokens += x[:, 1:].numel()
    model.train()
    return total_loss / total_tokens, total_tokens


def learning_rate(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to 10%


def write_tokenizer_files(folder, tokenizer_model, context):
    shutil.copy(tokenizer_model, os.path.join(folder, "tokenizer.model"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "model_max_length": context,
            "legacy": True,
            "clean_up_tokenization_spaces": False,
        }, f, indent=2)
        f.write("\n")


def plot_loss(log_rows, eval_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([r["step"] for r in log_rows], [r["train_loss"] for r in log_rows], label="training loss")
    axis.plot([r["step"] for r in eval_rows], [r["heldout_loss"] for r in eval_rows], "o-",
              label="held-out loss")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats per token)")
    axis.set_yscale("log")
    axis.set_title("servelab-stories training")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=HERE, help="the Hugging Face folder to write")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=1, help="training corpus and init seed")
    parser.add_argument("--heldout-seed", type=int, default=2)
    parser.add_argument("--corpus-mb", type=float, default=60)
    parser.add_argument("--heldout-mb", type=float, default=2)
    parser.add_argument("--vocab", type=int, default=3072)
    parser.add_argument("--hidden", type=int, default=320)
    parser.add_argument("--intermediate", type=int, default=864)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3500)
    parser.add_argument("--batch", type=int, default=64, help="sequences of --context tokens per step")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 1),
                        help="sentencepiece threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()

    started = time.time()
    device = "cuda"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    work = args.work or tempfile.mkdtemp(prefix="servelab-stories-")
    os.makedirs(work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"GPU {torch.cuda.get_device_name(0)}, work dir {work}")

    # 1. Corpora.
    train_path, heldout_path = os.path.join(work, "train.txt"), os.path.join(work, "heldout.txt")
    log(f"writing {args.corpus_mb} MB of stories (seed {args.seed}) and {args.heldout_mb} MB held out "
        f"(seed {args.heldout_seed})")
    story_corpus.write_corpus(train_path, seed=args.seed, megabytes=args.corpus_mb, workers=1)
    # One worker: the corpus takes ~15 s anyway, and process pools hung on one sandboxed GPU host.
    story_corpus.write_corpus(heldout_path, seed=args.heldout_seed, megabytes=args.heldout_mb, workers=1)
    train_stories, heldout_stories = read_stories(train_path), read_stories(heldout_path)
    corpus_seconds = time.time() - started
    log(f"{len(train_stories)} training stories, {len(heldout_stories)} held-out stories "
        f"({corpus_seconds:.0f} s)")

    # 2. Tokenizer.
    tokenizer_model = train_tokenizer(train_stories, os.path.join(work, "tokenizer"), args.vocab,
                                      args.threads)
    processor = spm.SentencePieceProcessor(model_file=tokenizer_model)
    vocab = processor.get_piece_size()
    train_stream = encode_stories(processor, train_stories, args.threads)
    heldout_stream = encode_stories(processor, heldout_stories, args.threads)
    heldout_characters = sum(len(s) for s in heldout_stories)
    tokenizer_seconds = time.time() - started - corpus_seconds
    log(f"tokenizer: {vocab} pieces; {len(train_stream):,} training tokens, "
        f"{len(heldout_stream):,} held-out tokens ({tokenizer_seconds:.0f} s)")

    # 3. Model and training.
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=args.context,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=processor.bos_id(), eos_token_id=processor.eos_id(), hidden_act="silu")
    model = transformers.LlamaForCausalLM(config).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"model: {parameters:,} parameters ({args.layers} layers, hidden {args.hidden}, "
        f"heads {args.heads}/{args.kv_heads})")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), fused=True)
    forward = torch.compile(model) if args.compile else model

    data = torch.from_numpy(train_stream.astype(np.int64))
    generator = torch.Generator().manual_seed(args.seed)
    log_rows, eval_rows = [], []
    train_started = time.time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        starts = torch.randint(0, len(data) - args.context - 1, (args.batch,), generator=generator)
        x = torch.stack([data[s:s + args.context] for s in starts.tolist()]).to(device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = forward(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0 or step == args.steps - 1:
            elapsed = time.time() - train_started
            row = {"step": step, "train_loss": loss.item(), "lr": optimizer.param_groups[0]["lr"],
                   "tokens_seen": (step + 1) * args.batch * args.context,
                   "elapsed_s": round(elapsed, 2)}
            log_rows.append(row)
            if step % 250 == 0 or step == args.steps - 1:
                heldout_loss, _ = evaluate(model, heldout_stream, args.context, 64, device, max_windows=256)
                eval_rows.append({"step": step, "heldout_loss": heldout_loss})
                rate = row["tokens_seen"] / max(elapsed, 1e-9)
                log(f"step {step:5d}/{args.steps}  loss {row['train_loss']:.3f}  held-out "
                    f"{heldout_loss:.3f}  lr {row['lr']:.2e}  {rate / 1e6:.2f} M tokens/s  {elapsed:.0f} s")
    train_seconds = time.time() - train_started

    # 4. Evaluation on the whole held-out corpus.
    heldout_loss, heldout_tokens = evaluate(model, heldout_stream, args.context, 64, device)
    perplexity = math.exp(heldout_loss)
    unigram = unigram_perplexity(train_stream, heldout_stream, vocab)
    bits_per_character = heldout_loss * heldout_tokens / math.log(2) / heldout_characters
    log(f"held-out perplexity {perplexity:.3f} per token (unigram baseline {unigram:.1f}); "
        f"{bits_per_character:.3f} bits per character")

    # 5. Save as a Hugging Face folder, then prove it loads as one.
    for name in ["model.safetensors", "model.safetensors.index.json"]:
        if os.path.exists(os.path.join(args.out, name)):
            os.remove(os.path.join(args.out, name))
    model.to(torch.bfloat16).save_pretrained(args.out)
    write_tokenizer_files(args.out, tokenizer_model, args.context)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(args.out).to(device).eval()
    hf_tokenizer = transformers.LlamaTokenizer.from_pretrained(args.out)
    prompt_ids = hf_tokenizer("Once upon a time")["input_ids"]
    if prompt_ids != [processor.bos_id()] + processor.encode("Once upon a time"):
        raise SystemExit(f"LlamaTokenizer encodes differently from sentencepiece: {prompt_ids}")
    prompt = torch.tensor([prompt_ids], device=device)
    samples = {}
    with torch.no_grad():
        greedy = reloaded.generate(prompt, max_new_tokens=160, do_sample=False)
        samples["greedy"] = hf_tokenizer.decode(greedy[0], skip_special_tokens=True)
        for seed in (1, 2):
            torch.manual_seed(seed)
            sampled = reloaded.generate(prompt, max_new_tokens=160, do_sample=True, temperature=0.8,
                                        top_p=0.95)
            samples[f"sampled_seed{seed}"] = hf_tokenizer.decode(sampled[0], skip_special_tokens=True)
    for name, text in samples.items():
        log(f"{name}: {text}")

    with open(os.path.join(args.out, "training_log.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log_rows[0].keys()))
        writer.writeheader()
        writer.writerows(log_rows)
    plot_loss(log_rows, eval_rows, os.path.join(args.out, "loss_curve.png"))
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump({
            "command": "python3 " + " ".join(sys.argv),
            "gpu": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "parameters": parameters,
            "vocab_size": vocab,
            "training_stories": len(train_stories),
            "training_tokens": int(len(train_stream)),
            "tokens_seen": args.steps * args.batch * args.context,
            "epochs": round(args.steps * args.batch * args.context / len(train_stream), 2),
            "heldout_stories": len(heldout_stories),
            "heldout_tokens": heldout_tokens,
            "heldout_loss": heldout_loss,
            "heldout_perplexity": perplexity,
            "unigram_perplexity": unigram,
            "heldout_bits_per_character": bits_per_character,
            "heldout_evaluations": eval_rows,
            "seconds": {"corpus": round(corpus_seconds, 1), "tokenizer": round(tokenizer_seconds, 1),
                        "training": round(train_seconds, 1),
                        "total": round(time.time() - started, 1)},
            "samples": samples,
        }, f, indent=1)
        f.write("\n")
    log(f"saved {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
