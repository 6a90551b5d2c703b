#!/usr/bin/env python3
"""GGUF fixtures for the importer, written with the `gguf` package (llama.cpp's reference writer).

    python3 scripts/make_gguf.py tiny-random-qwen-image gguf

From the tiny model's text encoder (bf16 safetensors) and tokenizer, writes what llama.cpp's
convert_hf_to_gguf.py writes for Qwen2.5-VL, re-implemented here from its documented behaviour:

  lm-<type>.gguf   the language model, arch qwen2vl; 2-D weights in <type> (quantized with
                   gguf.quants.quantize), norms and biases F32; tokenizer.ggml.* as llama.cpp's
                   get_vocab_base (byte-level tokens, [PAD<id>] fillers up to vocab_size as UNUSED,
                   added tokens CONTROL if special else USER_DEFINED) and the merges
  mmproj-f32.gguf  the vision tower, arch clip, projector qwen2.5vl_merger: attn.qkv split into
                   attn_q/k/v, the Conv3d patch embedding split into v.patch_embd.weight and .weight.1
                   (one temporal slice each), n_wa_pattern from fullatt_block_indexes, and
                   clip.vision.window_size (written by newer llama.cpp converters; the tiny model's is 56)
  seed-lm-mini.gguf  the language model's metadata and tokenizer with only token_embd (Q4_0): a fuzz seed
                   under libFuzzer's 256 KiB input limit that reaches the importer's name, config and tokenizer code
  blocks.gguf      one [2, 512] tensor per decodable ggml type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
                   Q8_0 quantized from random normals; Q4_K, Q5_K, Q6_K as random blocks with finite f16
                   scales, which gguf cannot quantize to) ...
  blocks-ref.safetensors  ... and gguf.quants.dequantize of each (the reference decoder), f32

Deterministic (numpy seed 7): a second run writes identical files.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import load_file, save_file


def bf16_file_to_f32(path):
    # safetensors.numpy cannot hold bf16: read the raw header and widen by hand.
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint8)
        if e["dtype"] == "BF16":
            v = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "F32":
            v = raw.view(np.float32)
        else:
            raise SystemExit(f"{name}: unexpected dtype {e['dtype']}")
        out[name] = v.reshape(e["shape"]).copy()
    return out


def load_text_encoder(model):
    te = os.path.join(model, "text_encoder")
    weights = {}
    for f in sorted(os.listdir(te)):
        if f.endswith(".safetensors"):
            weights.update(bf16_file_to_f32(os.path.join(te, f)))
    with open(os.path.join(te, "config.json")) as f:
        config = json.load(f)
    return weights, config


def vocab_arrays(model, vocab_size):
    with open(os.path.join(model, "tokenizer", "tokenizer.json")) as f:
        tj = json.load(f)
    reverse = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {}
    for t in tj["added_tokens"]:
        reverse[t["id"]] = t["content"]
        added[t["id"]] = t["special"]
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return tokens, types, merges


def add(w, name, value, qtype):
    value = np.ascontiguousarray(value, dtype=np.float32)
    if qtype == T.F32 or value.ndim == 1:
        w.add_tensor(name, value)
    elif qtype == T.F16:
        w.add_tensor(name, value.astype(np.float16))
    else:
        w.add_tensor(name, gguf.quants.quantize(value, qtype), raw_dtype=qtype)


LM_BLOCK = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def write_lm(path, weights, config, tokenizer, qtype, only=None):
    text = config.get("text_config", config)
    w = gguf.GGUFWriter(path, arch="qwen2vl")
    w.add_context_length(text["max_position_embeddings"])
    w.add_embedding_length(text["hidden_size"])
    w.add_block_count(text["num_hidden_layers"])
    w.add_feed_forward_length(text["intermediate_size"])
    w.add_head_count(text["num_attention_heads"])
    w.add_head_count_kv(text["num_key_value_heads"])
    w.add_rope_freq_base(text["rope_theta"])
    w.add_layer_norm_rms_eps(text["rms_norm_eps"])
    w.add_rope_dimension_sections(list(text["rope_scaling"]["mrope_section"]) + [0])
    tokens, types, merges = tokenizer
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(config["bos_token_id"])
    w.add_eos_token_id(config["eos_token_id"])
    w.add_pad_token_id(config["bos_token_id"])
    for name in sorted(weights):
        v = weights[name]
        if name.startswith("visual.") or (only is not None and name not in only):
            continue
        n = name.removeprefix("model.language_model.").removeprefix("model.")
        if n == "embed_tokens.weight":
            g = "token_embd.weight"
        elif n == "norm.weight":
            g = "output_norm.weight"
        elif n == "lm_head.weight":
            g = "output.weight"
        else:
            parts = n.split(".")
            assert parts[0] == "layers", name
            g = f"blk.{parts[1]}.{LM_BLOCK['.'.join(parts[2:-1])]}.{parts[-1]}"
        add(w, g, v, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


VISION_BLOCK = {"norm1": "ln1", "norm2": "ln2", "attn.proj": "attn_out",
                "mlp.up_proj": "ffn_up", "mlp.gate_proj": "ffn_gate", "mlp.down_proj": "ffn_down"}


def write_mmproj(path, config, names, load, qtype=T.F32, window_size=True):
    """The vision tower as llama.cpp's converter writes a Qwen2.5-VL mmproj: `names` are the checkpoint's
    tensor names (others than visual.* are skipped), `load(name)` gives one as f32, matrices go in `qtype`
    (norms and biases stay F32). Also used by benchmarks/peers/gguf_import.py (F16, no window_size key,
    as llama.cpp's Qwen2.5-VL converter)."""
    v = config["vision_config"]
    w = gguf.GGUFWriter(path, arch="clip")
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type("qwen2.5vl_merger")
    w.add_vision_projection_dim(v["out_hidden_size"])
    w.add_vision_patch_size(v["patch_size"])
    w.add_vision_image_size(560)
    w.add_vision_embedding_length(v["hidden_size"])
    w.add_vision_feed_forward_length(v["intermediate_size"])
    w.add_vision_block_count(v["depth"])
    w.add_vision_head_count(v["num_heads"])
    w.add_vision_image_mean([0.48145466, 0.4578275, 0.40821073])
    w.add_vision_image_std([0.26862954, 0.26130258, 0.27577711])
    w.add_vision_use_silu(True)
    full = v["fullatt_block_indexes"]
    w.add_vision_n_wa_pattern(full[0] + 1)
    if window_size:
        w.add_uint32("clip.vision.window_size", v["window_size"])
    w.add_vision_attention_layernorm_eps(1e-6)
    for name in sorted(names):
        n = name.removeprefix("model.")
        if not n.startswith("visual."):
            continue
        t = load(name)
        n = n.removeprefix("visual.")
        if n == "patch_embed.proj.weight":
            add(w, "v.patch_embd.weight", t[:, :, 0], qtype)
            add(w, "v.patch_embd.weight.1", t[:, :, 1], qtype)
        elif n.startswith("merger."):
            g = {"merger.ln_q.weight": "v.post_ln.weight", "merger.mlp.0.weight": "mm.0.weight", "merger.mlp.0.bias": "mm.0.bias",
                 "merger.mlp.2.weight": "mm.2.weight", "merger.mlp.2.bias": "mm.2.bias"}[n]
            add(w, g, t, qtype)
        else:
            parts = n.split(".")
            b, mid, suffix = parts[1], ".".join(parts[2:-1]), parts[-1]
            if mid == "attn.qkv":
                c = t.shape[0] // 3
                for i, q in enumerate("qkv"):
                    add(w, f"v.blk.{b}.attn_{q}.{suffix}", t[i * c:(i + 1) * c], qtype)
            else:
                add(w, f"v.blk.{b}.{VISION_BLOCK[mid]}.{suffix}", t, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def random_k_blocks(rng, qtype, rows, cols):
    elements, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // elements, size), dtype=np.uint8)
    f16 = lambda a: np.frombuffer(np.asarray(a, dtype=np.float16).tobytes(), dtype=np.uint8).reshape(*a.shape, 2)
    shape = (rows, cols // elements)
    if qtype in (T.Q4_K, T.Q5_K):     # d, dmin first
        raw[..., 0:2] = f16(rng.uniform(0.001, 0.01, shape))
        raw[..., 2:4] = f16(rng.uniform(0.001, 0.01, shape))
    else:                             # Q6_K: d last
        raw[..., size - 2:size] = f16(rng.uniform(0.001, 0.01, shape))
    return raw.reshape(rows, cols // elements * size)


def write_blocks(path, ref_path):
    rng = np.random.default_rng(7)
    rows, cols = 2, 512
    w = gguf.GGUFWriter(path, arch="blocks")
    ref = {}
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        x = rng.standard_normal((rows, cols)).astype(np.float32) * 0.05
        if qtype == T.F32:
            raw = x
        elif qtype == T.F16:
            raw = x.astype(np.float16)
        elif qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
            raw = random_k_blocks(rng, qtype, rows, cols)
        else:
            raw = gguf.quants.quantize(x, qtype)
        if qtype in (T.F32, T.F16):
            w.add_tensor(qtype.name, raw)
        else:
            w.add_tensor(qtype.name, raw, raw_dtype=qtype)
        ref[qtype.name] = gguf.quants.dequantize(raw if qtype not in (T.F32, T.F16) else raw.view(np.uint8).reshape(rows, -1), qtype).astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(ref, ref_path, metadata={"writer": f"gguf {gguf.__version__ if hasattr(gguf, '__version__') else ''}".strip()})


def main():
    model, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    weights, config = load_text_encoder(model)
    text = config.get("text_config", config)
    tokenizer = vocab_arrays(model, text["vocab_size"])
    for qtype in [T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]:
        write_lm(os.path.join(out, f"lm-{qtype.name.lower()}.gguf"), weights, config, tokenizer, qtype)
    write_mmproj(os.path.join(out, "mmproj-f32.gguf"), config, weights, weights.__getitem__)
    write_lm(os.path.join(out, "seed-lm-mini.gguf"), weights, config, tokenizer, T.Q4_0,
             only={"model.embed_tokens.weight", "model.language_model.embed_tokens.weight"})
    write_blocks(os.path.join(out, "blocks.gguf"), os.path.join(out, "blocks-ref.safetensors"))


if __name__ == "__main__":
    main()
