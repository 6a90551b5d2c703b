#!/usr/bin/env python3
"""One llama.cpp job in its own process (through llama-cpp-python's bindings to libllama).

    llama_child.py quantize --model IN.gguf --type Q4_K_M --threads N --out OUT.gguf
    llama_child.py embed    --model M.gguf  --ids IDS.json --threads N --out OUT.npy

`embed` decodes the token ids in one batch (a prefill, as the text encoder runs) with embeddings on and
pooling off, and saves the final hidden state of every token (after the output norm: the state that
encode_prompt reads as hidden_states[-1]). Prints one JSON line with load_s, run_s (llama_decode alone)
and the llama.cpp build info.
"""
import argparse
import ctypes
import json
import os
import time

import numpy as np
import llama_cpp as L

FTYPES = {
    "Q8_0": L.LLAMA_FTYPE_MOSTLY_Q8_0, "Q6_K": L.LLAMA_FTYPE_MOSTLY_Q6_K, "Q5_K_M": L.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q4_K_M": L.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q4_0": L.LLAMA_FTYPE_MOSTLY_Q4_0, "IQ4_XS": L.LLAMA_FTYPE_MOSTLY_IQ4_XS,
    "Q5_0": L.LLAMA_FTYPE_MOSTLY_Q5_0, "Q4_1": L.LLAMA_FTYPE_MOSTLY_Q4_1, "Q4_K_S": L.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "Q5_K_S": L.LLAMA_FTYPE_MOSTLY_Q5_K_S, "Q3_K_M": L.LLAMA_FTYPE_MOSTLY_Q3_K_M, "BF16": L.LLAMA_FTYPE_MOSTLY_BF16,
}


_QUIET = L.llama_log_callback(lambda level, text, data: None)   # kept alive: libllama holds the pointer


def quantize(a):
    params = L.llama_model_quantize_default_params()
    params.ftype = FTYPES[a.type]
    params.nthread = a.threads
    tmp = a.out + ".tmp"
    t0 = time.perf_counter()
    rc = L.llama_model_quantize(a.model.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_child: llama_model_quantize {a.model} -> {a.type} failed (rc {rc})")
    os.replace(tmp, a.out)
    print(json.dumps({"quantize_s": time.perf_counter() - t0, "bytes": os.path.getsize(a.out), "type": a.type}))


def embed(a):
    ids = json.load(open(a.ids))
    n = len(ids)
    L.llama_log_set(_QUIET, ctypes.c_void_p(0))
    L.llama_backend_init()
    t0 = time.perf_counter()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        raise SystemExit(f"llama_child: cannot load {a.model}")
    cp = L.llama_context_default_params()
    size = max(512, 1 << (n - 1).bit_length())
    cp.n_ctx = cp.n_batch = cp.n_ubatch = size
    cp.n_threads = cp.n_threads_batch = a.threads
    cp.embeddings = True
    cp.pooling_type = L.LLAMA_POOLING_TYPE_NONE
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit(f"llama_child: cannot create a context of {size} tokens for {a.model}")
    d = L.llama_model_n_embd(model)
    vocab = L.llama_model_get_vocab(model)
    nv = L.llama_vocab_n_tokens(vocab)
    bad = [t for t in ids if not 0 <= t < nv]
    if bad:
        raise SystemExit(f"llama_child: token ids {bad[:3]} outside the model's vocabulary of {nv}")
    batch = L.llama_batch_init(n, 0, 1)
    for i, t in enumerate(ids):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = n
    t1 = time.perf_counter()
    rc = L.llama_decode(ctx, batch)
    t2 = time.perf_counter()
    if rc != 0:
        raise SystemExit(f"llama_child: llama_decode failed (rc {rc})")
    out = np.empty((n, d), dtype=np.float32)
    for i in range(n):
        p = L.llama_get_embeddings_ith(ctx, i)
        out[i] = np.ctypeslib.as_array(p, shape=(d,))
    np.save(a.out, out)
    info = L.llama_print_system_info().decode()
    extra = {}
    if a.also_last:
        # The same prefill asking for the last token's output only: llama.cpp then runs its LM head (and
        # output norm) on one token instead of all, so the difference is what its embeddings path spends
        # on logits that this job does not need.
        L.llama_free(ctx)
        ctx = L.llama_init_from_model(model, cp)
        for i in range(n):
            batch.logits[i] = 1 if i == n - 1 else 0
        t3 = time.perf_counter()
        rc = L.llama_decode(ctx, batch)
        extra["run_last_only_s"] = time.perf_counter() - t3
        if rc != 0:
            raise SystemExit(f"llama_child: llama_decode (last token only) failed (rc {rc})")
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    print(json.dumps({"load_s": t1 - t0, "run_s": t2 - t1, "tokens": n, "hidden": d,
                      "llama_cpp_python": L.__version__, "system_info": info, **extra}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("job", choices=["quantize", "embed"])
    p.add_argument("--model", required=True)
    p.add_argument("--type")
    p.add_argument("--ids")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--also-last", action="store_true", help="embed: time a second prefill with one output token")
    a = p.parse_args()
    quantize(a) if a.job == "quantize" else embed(a)


if __name__ == "__main__":
    main()
