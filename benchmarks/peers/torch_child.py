#!/usr/bin/env python3
"""One PyTorch measurement in its own process (the peers benchmark starts one per run).

    torch_child.py text   --model DIR --ids IDS.json --threads N --out OUT.npy [--dtype bf16|f32]
    torch_child.py vision --model DIR --image PNG    --threads N --out OUT.npy
    torch_child.py vae-decode --model DIR --latents LAT.npy --threads N --out OUT.npy [--tiling]
    torch_child.py vae-encode --model DIR --image PNG       --threads N --out OUT.npy [--tiling]

Prints one JSON line: load_s (reading the weights), run_s (the forward pass alone) and the output shape.
Everything is loaded from the same synthetic safetensors that qwen-quant converts: the text encoder with
transformers' Qwen2_5_VLForConditionalGeneration, the vision tower with its
Qwen2_5_VisionTransformerPretrainedModel (weights `visual.*`) and Qwen2VLImageProcessor, the VAE with
diffusers' AutoencoderKLQwenImage.
"""
import argparse
import json
import os
import time

import numpy as np
import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("job", choices=["text", "vision", "vae-decode", "vae-encode"])
    p.add_argument("--model", required=True)
    p.add_argument("--ids")
    p.add_argument("--image")
    p.add_argument("--latents")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--tiling", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if a.job == "text":
            from transformers import Qwen2_5_VLForConditionalGeneration
            dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(a.model, "text_encoder"), dtype=dtype).eval()
            ids = torch.tensor([json.load(open(a.ids))], dtype=torch.long)
            t1 = time.perf_counter()
            out = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
            result = out.hidden_states[-1][0]   # what encode_prompt reads, before dropping the template
        elif a.job == "vision":
            from PIL import Image
            from safetensors import safe_open
            from transformers import AutoConfig, Qwen2VLImageProcessor
            from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
            te = os.path.join(a.model, "text_encoder")
            cfg = AutoConfig.from_pretrained(te).vision_config
            model = Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg, dtype=torch.float32).eval()
            index = json.load(open(os.path.join(te, "model.safetensors.index.json")))["weight_map"]
            state = {}
            for f in sorted({v for k, v in index.items() if k.startswith("visual.")}):
                with safe_open(os.path.join(te, f), "pt") as fh:
                    for k in fh.keys():
                        if k.startswith("visual."):
                            state[k[len("visual."):]] = fh.get_tensor(k).float()
            model.load_state_dict(state, strict=True)
            proc = Qwen2VLImageProcessor.from_pretrained(os.path.join(a.model, "processor"))
            inputs = proc(images=[Image.open(a.image).convert("RGB")], return_tensors="pt")
            t1 = time.perf_counter()
            out = model(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
            result = out.pooler_output
        else:
            from diffusers import AutoencoderKLQwenImage
            vae = AutoencoderKLQwenImage.from_pretrained(os.path.join(a.model, "vae"), torch_dtype=torch.float32).eval()
            if a.tiling:
                vae.enable_tiling()
            if a.job == "vae-decode":
                z = torch.from_numpy(np.load(a.latents))
                t1 = time.perf_counter()
                result = vae.decode(z).sample
            else:
                from PIL import Image
                img = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32)
                x = torch.from_numpy(img / 127.5 - 1.0).permute(2, 0, 1)[None, :, None]
                t1 = time.perf_counter()
                result = vae.encode(x).latent_dist.mode()
        t2 = time.perf_counter()
    arr = result.float().numpy()
    np.save(a.out, arr)
    print(json.dumps({"load_s": t1 - t0, "run_s": t2 - t1, "shape": list(arr.shape),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
