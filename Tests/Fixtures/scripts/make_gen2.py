#!/usr/bin/env python3
"""Tiny random-weight copies of Qwen-Image 2.1's support components, and their reference outputs.

Writes OUT/model/ in the hub layout of QwenImage21Pipeline (model_index.json; processor/ with the
tokenizer, image processor settings and a chat template; text_encoder/ = Qwen3VLForConditionalGeneration,
bf16, two shards; vae/ = AutoencoderKLQwenImage21, bf16) and OUT/refs/ with what the upstream code computes
from it in float32 on the CPU:

  gen2_t2i.safetensors   QwenImage21Pipeline.encode_prompt for single prompts (one of them empty, which the
                         pipeline turns into " "), and for a batch (left padding: positions are arange over the
                         padded sequence, a quirk kept as is); prompt_embeds, the mask, image_pad_mask, the
                         input ids; and the same prompt's last hidden state *with* the final RMSNorm applied
                         (what the pipeline hooks away), so a test can show that state would fail.
  gen2_vae.safetensors   AutoencoderKLQwenImage21 on an RGBA image: posterior mean / logvar, the latents
                         normalized as _encode_vae_image does, and the decode of given latents (clamped).
  gen2_ti2i.safetensors  _get_qwen_prompt_embeds with reference images (one, three of different sizes with
                         an RGBA one, a left-padded batch of two prompts), with the pieces to debug a port:
                         input ids, get_rope_index positions, the vision tower's merger and DeepStack outputs,
                         pixel_values; and an image resized as __call__ does before encode_prompt.
  gen2_cases.json        what each tensor is, the library versions, the drop index and the token ids.

The shapes are scaled down from the upstream classes' defaults (transformers Qwen3VLConfig, diffusers
AutoencoderKLQwenImage21); the real checkpoints' config files cannot be downloaded here. The tokenizer is
the first generation's tiny one (same special tokens; Qwen3-VL uses the Qwen2 tokenizer), and the chat
template is a minimal one that formats a system message as the Qwen chat templates do
("<|im_start|>system\\n...<|im_end|>\\n"): only the drop index depends on it.

  python3 Tests/Fixtures/scripts/make_gen2.py Tests/Fixtures/tiny-random-qwen-image Tests/Fixtures/gen2
"""

from __future__ import annotations

import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PROMPTS = ["A cat sitting on a red sofa, oil painting", "", "一只在雪地里的红狐狸, 35mm film"]
BATCH = ["a small red fox", "a much longer prompt about a lighthouse on a rocky coast at dusk, waves, long exposure", "x"]


def main(gen1_model: str, out: str) -> None:
    import diffusers
    import transformers
    from diffusers import AutoencoderKLQwenImage21, QwenImage21Pipeline
    from safetensors.torch import save_file
    from transformers import Qwen2Tokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model_dir, refs_dir = os.path.join(out, "model"), os.path.join(out, "refs")
    for d in (model_dir, refs_dir):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)

    # Processor: the first generation's tiny tokenizer, Qwen3-VL image settings (patch 16, merge 2).
    tok = Qwen2Tokenizer.from_pretrained(os.path.join(gen1_model, "tokenizer"))
    ip = Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                  size={"shortest_edge": 64 * 64, "longest_edge": 512 * 512})
    try:
        proc = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=CHAT_TEMPLATE)
    except Exception:  # transformers 5.x without torchvision: skip only the check of the unused video processor
        class NoVideo(Qwen3VLProcessor):
            def check_argument_for_proper_class(self, argument_name, argument):
                return None if argument_name == "video_processor" and argument is None else \
                    super().check_argument_for_proper_class(argument_name, argument)
        proc = NoVideo(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=CHAT_TEMPLATE)
    pdir = os.path.join(model_dir, "processor")
    tok.save_pretrained(pdir)
    ip.save_pretrained(pdir)
    with open(os.path.join(pdir, "chat_template.jinja"), "w") as f:
        f.write(CHAT_TEMPLATE)

    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    vocab = 3072
    cfg = Qwen3VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, temporal_patch_size=2,
                           spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0, 1, 2]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    te = Qwen3VLForConditionalGeneration(cfg)
    with torch.no_grad():   # random but not tiny values, so that every part moves the outputs
        for name, p in te.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name and p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.08)
    te = te.to(torch.bfloat16)
    te.save_pretrained(os.path.join(model_dir, "text_encoder"), max_shard_size="1MB")
    te = Qwen3VLForConditionalGeneration.from_pretrained(os.path.join(model_dir, "text_encoder"), dtype=torch.float32).eval()

    vae = AutoencoderKLQwenImage21(base_dim=8, decoder_base_dim=12, z_dim=16, dim_mult=[1, 2, 2, 4, 4], num_res_blocks=1,
                                   temperal_downsample=[False, True, True, True],
                                   latents_mean=[round(float(x), 4) for x in torch.randn(16) * 0.5],
                                   latents_std=[round(float(x), 4) for x in 1 + torch.rand(16)])
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    vae = vae.to(torch.bfloat16)
    vae.save_pretrained(os.path.join(model_dir, "vae"))
    vae = AutoencoderKLQwenImage21.from_pretrained(os.path.join(model_dir, "vae"), torch_dtype=torch.float32).eval()

    with open(os.path.join(model_dir, "model_index.json"), "w") as f:
        json.dump({"_class_name": "QwenImage21Pipeline", "_diffusers_version": diffusers.__version__,
                   "processor": ["transformers", "Qwen3VLProcessor"], "scheduler": [None, None],
                   "text_encoder": ["transformers", "Qwen3VLForConditionalGeneration"], "transformer": [None, None],
                   "vae": ["diffusers", "AutoencoderKLQwenImage21"]}, f, indent=2, sort_keys=True)

    pipe = QwenImage21Pipeline(scheduler=None, vae=vae, text_encoder=te, processor=proc, transformer=None)
    t2i, cases = {}, {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                   "diffusers": diffusers.__version__},
                      "drop_index": int(pipe._drop_idx), "image_token_id": int(pipe._img_token_id),
                      "system_prompt": pipe.sys_prompt, "tensors": {}}

    def put(store, name, t, what):
        store[name] = t.detach().contiguous().cpu()
        cases["tensors"][name] = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "what": what}

    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            emb, mask, pad = pipe._get_qwen_prompt_embeds(p, device="cpu")
            put(t2i, f"t2i.p{i}.prompt_embeds", emb, f"_get_qwen_prompt_embeds({p!r})[0]: last decoder layer, final norm hooked away, after the drop index")
            put(t2i, f"t2i.p{i}.mask", mask, "[1, L] int64")
            put(t2i, f"t2i.p{i}.image_pad_mask", pad.to(torch.uint8), "[1, L] bool as uint8")
            text = pipe.prompt_template_t2i.format(p if p else " ")
            enc = proc(text=[text], return_tensors="pt")
            put(t2i, f"t2i.p{i}.input_ids", enc["input_ids"], "processor input ids of the templated prompt (before the drop)")
            normed = te.model.language_model(input_ids=enc["input_ids"]).last_hidden_state[:, pipe._drop_idx:]
            put(t2i, f"t2i.p{i}.normed_state", normed, "the same rows WITH the final RMSNorm (what the pipeline does not return)")
        emb, mask, pad = pipe._get_qwen_prompt_embeds(BATCH, device="cpu")
        put(t2i, "t2i.batch.prompt_embeds", emb, "batch of 3, left-padded in the encoder (positions arange over the padded rows), right-padded with zeros after")
        put(t2i, "t2i.batch.mask", mask, "[3, L] int64")
        put(t2i, "t2i.batch.image_pad_mask", pad.to(torch.uint8), "[3, L] bool as uint8")
    save_file(t2i, os.path.join(refs_dir, "gen2_t2i.safetensors"))

    vae_refs = {}
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        u8 = (torch.rand((64, 96, 4), generator=g) * 255).round().to(torch.uint8)
        u8[:8, :, 3] = 0                                     # some transparent rows
        x = (u8.float() / 255 * 2 - 1).permute(2, 0, 1)[None, :, None]   # [1, 4, 1, 64, 96]
        post = vae.encode(x).latent_dist
        put(vae_refs, "vae.enc.image_uint8", u8, "RGBA input, HWC uint8")
        put(vae_refs, "vae.enc.image", x, "[1, 4, 1, H, W] = uint8 / 255 * 2 - 1")
        put(vae_refs, "vae.enc.posterior_mean", post.mean, "encode(x).latent_dist.mean")
        put(vae_refs, "vae.enc.posterior_logvar", post.logvar, "encode(x).latent_dist.logvar (clamped to [-30, 20])")
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        put(vae_refs, "vae.enc.latents_normalized", (post.mean - mean) / std, "(mean - latents_mean) / latents_std, as _encode_vae_image")
        z = torch.randn((1, 16, 1, 5, 7), generator=g)
        put(vae_refs, "vae.dec.latents", z, "latents to decode (not normalized)")
        put(vae_refs, "vae.dec.sample", vae.decode(z).sample, "decode(z).sample, clamped to [-1, 1]: [1, 4, 1, 80, 112]")
    save_file(vae_refs, os.path.join(refs_dir, "gen2_vae.safetensors"))
    image_conditioned(pipe, te, proc, refs_dir, cases, put)
    with open(os.path.join(refs_dir, "gen2_cases.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True, ensure_ascii=False)
    print(f"drop index {pipe._drop_idx}; wrote {model_dir} and {refs_dir}")


TI2I_PROMPTS = {"one": ["Make the sofa blue"],
                "multi": ["Put the cat from <image1> on the sofa of <image2>, lit like <image3>"],
                "batch": ["a fox", "the same scene at night with long exposure light trails and rain"],
                "call": ["Remove the background"]}


def test_images():
    """Deterministic test images (numpy RandomState, so the global torch RNG is left alone)."""
    from PIL import Image
    rs = np.random.RandomState(5)

    def img(h, w, alpha=False):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 7) % 256], -1)
        px = np.clip(base + rs.randint(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)
        if not alpha:
            return Image.fromarray(px, "RGB")
        a = rs.randint(0, 256, size=(h, w, 1)).astype(np.uint8)
        a[: h // 4] = 0        # a transparent band
        a[-h // 4:] = 255      # an opaque band
        return Image.fromarray(np.concatenate([px, a], -1), "RGBA")
    # A: 96x64 RGB (grid 4x6 patches); B: 64x160 RGBA with partial alpha (grid 10x4: taller than the 8x8 table);
    # C: 320x96 RGB (grid 6x20: wider than the table); D: 100x70 RGBA for the __call__ pre-resize.
    return {"A": img(64, 96), "B": img(160, 64, alpha=True), "C": img(96, 320), "D": img(70, 100, alpha=True)}


def image_conditioned(pipe, te, proc, refs_dir, cases, put):
    """QwenImage21Pipeline._get_qwen_prompt_embeds with reference images, and the pieces to debug it."""
    from safetensors.torch import save_file
    from diffusers.pipelines.qwenimage21.pipeline_qwenimage21 import calculate_dimensions
    ims = test_images()
    refs = {}
    for k, im in ims.items():
        a = np.asarray(im)
        put(refs, f"image.{k}", torch.from_numpy(a.copy()), f"test image {k}: {im.mode} HWC uint8")
    sets = {"one": ["A"], "multi": ["A", "B", "C"], "batch": ["A", "B"]}
    with torch.no_grad():
        for case, names in sets.items():
            images = [ims[n] for n in names]
            prompts = TI2I_PROMPTS[case]
            emb, mask, pad = pipe._get_qwen_prompt_embeds(prompts if len(prompts) > 1 else prompts[0], image=images,
                                                          device="cpu")
            put(refs, f"ti2i.{case}.prompt_embeds", emb, f"_get_qwen_prompt_embeds({prompts!r}, image={names})[0]")
            put(refs, f"ti2i.{case}.mask", mask, "[B, L] int64")
            put(refs, f"ti2i.{case}.image_pad_mask", pad.to(torch.uint8), "[B, L] bool as uint8")
            # The pieces, for one prompt and one set of images, as the pipeline builds them.
            replace = "<image1><|vision_start|><|image_pad|><|vision_end|>"
            for i in range(2, len(images) + 1):
                replace += f" <image{i}><|vision_start|><|image_pad|><|vision_end|>"
            text = pipe.prompt_template_ti2i.replace("<image1><|vision_start|><|image_pad|><|vision_end|>", replace)
            flat = []
            for im in images:
                if im.mode == "RGBA":
                    from PIL import Image
                    white = Image.new("RGB", im.size, (255, 255, 255))
                    white.paste(im, mask=im.getchannel("A"))
                    im = white
                flat.append(im)
            enc = proc(text=[text.format(prompts[0])], images=flat, return_tensors="pt")
            put(refs, f"ti2i.{case}.input_ids", enc["input_ids"], "processor input ids of the first prompt (image pads expanded)")
            if case == "multi":   # the other cases' images are a subset of these
                put(refs, f"ti2i.{case}.pixel_values", enc["pixel_values"], "processor pixel_values of the images (RGBA over white)")
            put(refs, f"ti2i.{case}.image_grid_thw", enc["image_grid_thw"], "[images, 3]")
            pos, _ = te.model.get_rope_index(enc["input_ids"], enc["mm_token_type_ids"], image_grid_thw=enc["image_grid_thw"],
                                             attention_mask=enc["attention_mask"])
            put(refs, f"ti2i.{case}.position_ids", pos[:, 0], "[3, L] get_rope_index (interleaved mrope positions)")
            vis = te.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"], return_dict=True)
            put(refs, f"ti2i.{case}.image_embeds", vis.pooler_output, "vision tower merger output [tokens, out_hidden]")
            for j, f in enumerate(vis.deepstack_features):
                put(refs, f"ti2i.{case}.deepstack{j}", f, f"DeepStack merger {j} output (added after decoder layer {j})")
        # __call__'s pre-resize: RGBA, calculate_dimensions(output_resolution**2, w / h), VaeImageProcessor.resize (lanczos).
        res = 96
        im = ims["D"]
        w, h, _ = calculate_dimensions(res * res, im.size[0] / im.size[1])
        resized = pipe.image_processor.resize(im.convert("RGBA"), width=w, height=h)
        put(refs, "ti2i.call.resized", torch.from_numpy(np.asarray(resized).copy()),
            f"image D after __call__'s resize to calculate_dimensions({res}**2, w/h) = {w}x{h}, RGBA")
        emb, mask, pad = pipe._get_qwen_prompt_embeds(TI2I_PROMPTS["call"][0], image=[resized], device="cpu")
        put(refs, "ti2i.call.prompt_embeds", emb, f"encode_prompt with image D as __call__(output_resolution={res}) passes it")
        put(refs, "ti2i.call.image_pad_mask", pad.to(torch.uint8), "[1, L] bool as uint8")
    cases["ti2i_prompts"] = TI2I_PROMPTS
    cases["ti2i_call_output_resolution"] = res
    save_file(refs, os.path.join(refs_dir, "gen2_ti2i.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    np.random.seed(0)
    main(sys.argv[1], sys.argv[2])
