#!/usr/bin/env python3
"""Writes the language model of a Qwen-Image text encoder (safetensors, diffusers layout) as a BF16 GGUF
that llama.cpp loads as arch `qwen2`, with the exact same tensor values, then checks it.

    to_gguf.py TEXT_ENCODER_DIR TOKENIZER_DIR OUT.gguf [--qwen2vl | --qwen3]

With --qwen2vl the file says arch `qwen2vl` with the mrope sections (`rope.dimension_sections`), as
llama.cpp's own converter writes Qwen2.5-VL (the GGUF import benchmark, gguf_import.py).
With --qwen3 (Qwen-Image 2.1's Qwen3-VL text encoder) the file says arch `qwen3`: per-head q/k RMSNorm
(`attn_q_norm`, `attn_k_norm`), an explicit head width (`attention.key_length`), no biases. For text-only
positions Qwen3-VL's interleaved mrope is the 1-D NEOX rope of `qwen3`, so it is the same function.

Matrices stay bf16 bit for bit (GGUF type BF16); norms and biases become f32 (exact: every bf16 value is
an f32), as llama.cpp's own converter does. The vision tower is not written (llama.cpp keeps it in a
separate mmproj file). For text-only positions Qwen2.5-VL's multimodal rope equals the 1-D NEOX rope of
`qwen2`, so the hidden states are the same function of the same weights.

The tokenizer metadata comes from TOKENIZER_DIR/tokenizer.json (vocabulary, merges, special tokens at
their ids), padded to the model's vocabulary size with unused tokens as llama.cpp's converter does.
The benchmark feeds token ids directly, so the tokenizer is only carried, never used to tokenize.
"""
import json
import os
import struct
import sys

import numpy as np
import gguf


def read_safetensors_index(folder):
    """name -> (file, dtype, shape, begin, end) for every tensor of a sharded or single-file checkpoint."""
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        path = os.path.join(folder, f)
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            out[name] = (path, info["dtype"], info["shape"], 8 + n + b, 8 + n + e)
    return out


def load(entry, as_f32=False):
    """A tensor as a read-only memory map (bf16 as uint16 bits), or as f32."""
    path, dtype, shape, b, e = entry
    np_dtype = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}[dtype]
    count = int(np.prod(shape)) if shape else 1
    arr = np.memmap(path, dtype=np_dtype, mode="r", offset=b, shape=(count,)).reshape(shape)
    if not as_f32:
        if dtype != "BF16":
            raise SystemExit(f"to_gguf: {path}: expected bf16 matrices, found {dtype}")
        return arr
    if dtype == "BF16":
        return (np.asarray(arr).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(arr, dtype=np.float32)


NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
}


def gguf_name(hf):
    """The llama.cpp name of a checkpoint tensor, or None for tensors the language model does not use."""
    for prefix in ("model.language_model.", "model."):
        if hf.startswith(prefix):
            rest = hf[len(prefix):]
            break
    else:
        return "output.weight" if hf == "lm_head.weight" else None
    if rest == "embed_tokens.weight":
        return "token_embd.weight"
    if rest == "norm.weight":
        return "output_norm.weight"
    if rest.startswith("layers."):
        _, i, tail = rest.split(".", 2)
        module, kind = tail.rsplit(".", 1)
        if module in NAMES:
            return f"blk.{i}.{NAMES[module]}.{kind}"
    return None


def tokenizer_metadata(w, tok_dir, vocab_size):
    tj = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
    vocab = tj["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for text, i in vocab.items():
        if i < vocab_size:
            tokens[i], types[i] = text, gguf.TokenType.NORMAL
    for i, t in added.items():
        if i < vocab_size:
            tokens[i] = t["content"]
            types[i] = gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED
    by_text = {t["content"]: i for i, t in added.items()}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eos = by_text.get("<|im_end|>", by_text.get("<|endoftext|>"))
    pad = by_text.get("<|endoftext|>")
    if eos is not None:
        w.add_eos_token_id(eos)
    if pad is not None:
        w.add_pad_token_id(pad)
        w.add_bos_token_id(pad)
    w.add_add_bos_token(False)


def main():
    qwen2vl, qwen3 = "--qwen2vl" in sys.argv, "--qwen3" in sys.argv
    args = [a for a in sys.argv[1:] if a not in ("--qwen2vl", "--qwen3")]
    if len(args) != 3:
        raise SystemExit(__doc__)
    te_dir, tok_dir, out = args
    cfg = json.load(open(os.path.join(te_dir, "config.json")))
    tc = cfg.get("text_config", cfg)
    get = lambda k: tc.get(k, cfg.get(k))
    tensors = read_safetensors_index(te_dir)
    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "qwen2vl" if qwen2vl else "qwen3" if qwen3 else "qwen2")
    w.add_name("qwen-image-synthetic-text-encoder")
    w.add_context_length(int(get("max_position_embeddings")))
    w.add_embedding_length(int(get("hidden_size")))
    w.add_block_count(int(get("num_hidden_layers")))
    w.add_feed_forward_length(int(get("intermediate_size")))
    w.add_head_count(int(get("num_attention_heads")))
    w.add_head_count_kv(int(get("num_key_value_heads")))
    w.add_rope_freq_base(float(get("rope_theta") or (get("rope_parameters") or {}).get("rope_theta")))
    w.add_layer_norm_rms_eps(float(get("rms_norm_eps")))
    if qwen3:
        hd = int(get("head_dim") or int(get("hidden_size")) // int(get("num_attention_heads")))
        w.add_key_length(hd)
        w.add_value_length(hd)
    if qwen2vl:
        rope = get("rope_scaling") or get("rope_parameters") or {}
        w.add_rope_dimension_sections(list(rope["mrope_section"]) + [0])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    vocab_size = int(get("vocab_size"))
    tokenizer_metadata(w, tok_dir, vocab_size)
    written, skipped = {}, []
    for hf in sorted(tensors, key=lambda n: (gguf_name(n) or "", n)):
        name = gguf_name(hf)
        if name is None:
            skipped.append(hf)
            continue
        entry = tensors[hf]
        if len(entry[2]) == 1:
            w.add_tensor(name, load(entry, as_f32=True))
        else:
            w.add_tensor(name, load(entry), raw_dtype=gguf.GGMLQuantizationType.BF16)
        written[name] = hf
    unexpected = [n for n in skipped if not n.startswith(("visual.", "model.visual."))]
    if unexpected:
        raise SystemExit(f"to_gguf: {te_dir}: tensors with no llama.cpp name: {unexpected[:5]}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    check(tmp, tensors, written)
    os.replace(tmp, out)
    print(json.dumps({"gguf": out, "tensors": len(written), "bytes": os.path.getsize(out)}))


def check(path, tensors, written):
    """Reads the GGUF back and compares every tensor with the checkpoint, bit for bit."""
    r = gguf.GGUFReader(path)
    seen = 0
    for t in r.tensors:
        entry = tensors[written[t.name]]
        src = load(entry, as_f32=len(entry[2]) == 1)
        got = np.ascontiguousarray(t.data).view(np.uint8).ravel()
        if not np.array_equal(got, np.ascontiguousarray(src).view(np.uint8).ravel()):
            raise SystemExit(f"to_gguf: {path}: tensor {t.name} differs from {written[t.name]} after writing")
        seen += 1
    if seen != len(written):
        raise SystemExit(f"to_gguf: {path}: expected {len(written)} tensors, read back {seen}")


if __name__ == "__main__":
    main()
