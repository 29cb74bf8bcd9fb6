#!/usr/bin/env python3
"""Writes a Llama-3-8B-shaped checkpoint with random bf16 weights, for the GPU benchmarks that go
through the servers (which load checkpoints from disk, as users' servers do).

The shape is Llama-3-8B's (32 layers, hidden 4096, MLP 14336, 32 query and 8 KV heads of 128,
vocabulary 128,256, context 8,192), so every forward call does the same work and reads the same
16 GB of weights as the real model. The tokenizer is the embedded model's (3,072 pieces): the
prompts of a replay are made of its tokens. So that greedy decoding only ever picks a token the
tokenizer can print, the output projection's rows past the tokenizer's vocabulary are zero (their
logit is exactly 0, and with 3,072 random logits of spread ~1.3 the largest is above 0 in
practice always); those rows are still multiplied, so the work is unchanged.

usage: make_random_llama.py OUT_DIR [--layers N] [--seed S]
Needs PyTorch and safetensors (the device machine has both); uses the GPU when present.
"""

import argparse
import json
import os
import shutil
import sys
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
EMBEDDED = os.path.join(HERE, "..", "models", "servelab-stories")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import sentencepiece

    tokenizer_vocab = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(EMBEDDED, "tokenizer.model")).get_piece_size()
    embedded = json.load(open(os.path.join(EMBEDDED, "config.json")))
    hidden, mlp, heads, kv_heads, head_dim, vocab = 4096, 14336, 32, 8, 128, 128256
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": args.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": embedded["bos_token_id"],
        "eos_token_id": embedded["eos_token_id"],
        "torch_dtype": "bfloat16",
    }
    os.makedirs(args.out, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(args.seed)

    def normal(*shape):
        return (torch.randn(*shape, generator=generator, device=device, dtype=torch.float32) *
                0.02).to(torch.bfloat16).cpu()

    def ones(n):
        return torch.ones(n, dtype=torch.bfloat16)

    start = time.time()
    weight_map = {}
    shards = []
    # One shard per 8 layers (about 3.5 GB), plus the embeddings and the head.
    head = {"model.embed_tokens.weight": normal(vocab, hidden), "model.norm.weight": ones(hidden)}
    lm_head = normal(vocab, hidden)
    lm_head[tokenizer_vocab:] = 0
    head["lm_head.weight"] = lm_head
    shards.append(head)
    layer_shard = {}
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        layer_shard.update({
            p + "input_layernorm.weight": ones(hidden),
            p + "post_attention_layernorm.weight": ones(hidden),
            p + "self_attn.q_proj.weight": normal(heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": normal(kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": normal(kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": normal(hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": normal(mlp, hidden),
            p + "mlp.up_proj.weight": normal(mlp, hidden),
            p + "mlp.down_proj.weight": normal(hidden, mlp),
        })
        if (layer + 1) % 8 == 0 or layer + 1 == args.layers:
            shards.append(layer_shard)
            layer_shard = {}
        print(f"\r[make_random_llama] layer {layer + 1}/{args.layers}", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    total = 0
    for index, shard in enumerate(shards):
        name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(args.out, name), metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * 2
        print(f"[make_random_llama] wrote {name}", file=sys.stderr, flush=True)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(args.out, "model.safetensors.index.json"), "w"), indent=2)
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(EMBEDDED, name), os.path.join(args.out, name))
    print(f"[make_random_llama] {total / 1e9:.2f} GB of bf16 weights in {args.out} "
          f"({time.time() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
