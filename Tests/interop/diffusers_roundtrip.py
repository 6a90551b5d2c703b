#!/usr/bin/env python3
"""A real diffusers round trip: qwen-run's outputs inside the installed QwenImage pipelines.

On the bundled tiny checkpoint (Tests/Fixtures/tiny-random-qwen-image) plus a tiny random
QwenImageTransformer2DModel made here (seeded), it checks that

  1. our `prompt_embeds` / `prompt_embeds_mask` (and the negative ones) given to
     QwenImagePipeline(prompt_embeds=..., ...) give the same latents as the pipeline's own encode_prompt;
  2. our VAE decodes the pipeline's output_type="latent" latents (unpacked, normalized) with
     `vae-decode --denormalize` to the same image as the pipeline's own decode (output_type="pt");
  3. our `vae-encode --normalize` latents of the reference image, used by QwenImageEditPipeline and
     QwenImageEditPlusPipeline in place of their own VAE encoding, give the same latents as the
     pipelines encoding the image themselves. (diffusers 0.42's edit pipelines read `image.size` of a
     PIL image in __call__ before anything else, so latents cannot be passed as `image`; they go in by
     replacing the pipeline's `_encode_vae_image`, whose output they are: `(mean - latents_mean) / latents_std`.)

  4. Qwen-Image 2.1 (Tests/Fixtures/gen2, a tiny QwenImage21Transformer2DModel made here): our
     text-to-image `prompt_embeds` in QwenImage21Pipeline(prompt_embeds=...) give the pipeline's own latents;
     our image-conditioned `prompt_embeds` / `image_pad_mask` (`encode --image`) equal its encode_prompt with
     images (its __call__ takes no image_pad_mask, so precomputed image-conditioned embeddings go through
     encode_prompt); our `vae-decode --denormalize` of its latents equals its RGBA output_type="pt".

Relative L2 error `|ours - theirs| / |theirs|` must stay under --tol (1e-4) for each.
Without torch / diffusers / transformers it prints "SKIP: ..." and exits 0 (the test suite's other
parts do not need Python); `--require` makes that an error.

  python3 Tests/interop/diffusers_roundtrip.py                     # after `swift build` or `swift test`
  python3 Tests/interop/diffusers_roundtrip.py --bin-dir .build/release --require
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, QWEN_NO_PROGRESS="1"))
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    return r


def rel_l2(ours, theirs, start=None):
    """|ours - theirs| / |theirs - start|: with `start` (the initial noise both runs began from), the error
    relative to what the denoising steps changed, which is what depends on the conditioning."""
    import torch
    ours, theirs = ours.double().flatten(), theirs.double().flatten()
    if ours.shape != theirs.shape:
        return float("inf")
    ref = theirs if start is None else theirs - start.double().flatten()
    return float(torch.linalg.vector_norm(ours - theirs) / torch.linalg.vector_norm(ref))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=None, help="folder with qwen-run and qwen-quant (default: .build/release, else .build/debug)")
    ap.add_argument("--model", default=os.path.join(ROOT, "Tests/Fixtures/tiny-random-qwen-image"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--require", action="store_true", help="fail instead of skipping when torch / diffusers are missing")
    args = ap.parse_args()

    try:
        import numpy as np
        import torch
        from PIL import Image
        from safetensors.torch import load_file, save_file
        from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline,
                               QwenImageEditPlusPipeline, QwenImagePipeline, QwenImageTransformer2DModel)
        from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer, Qwen2VLProcessor
    except ImportError as e:
        msg = f"SKIP: the diffusers round trip needs torch, diffusers, transformers, safetensors and pillow ({e}); " \
              "pip install torch diffusers transformers safetensors pillow"
        if args.require:
            sys.exit(msg.replace("SKIP", "FAIL"))
        print(msg)
        return 0
    import diffusers
    import transformers

    bins = args.bin_dir or next((d for d in (os.path.join(ROOT, ".build/release"), os.path.join(ROOT, ".build/debug"))
                                 if os.path.exists(os.path.join(d, "qwen-run"))), None)
    if bins is None:
        sys.exit("FAIL: no qwen-run binary: run `swift build` first, or pass --bin-dir")
    qwen_run, qwen_quant = os.path.join(bins, "qwen-run"), os.path.join(bins, "qwen-quant")
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}; binaries in {bins}")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    work = tempfile.mkdtemp(prefix="qwen-interop-")
    pack = os.path.join(work, "tiny.pack")
    run([qwen_quant, "convert", args.model, "-o", pack, "--scheme", "f32"])

    m = args.model
    tok = Qwen2Tokenizer.from_pretrained(os.path.join(m, "tokenizer"))
    te = Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(m, "text_encoder"), dtype=torch.float32).eval()
    vae = AutoencoderKLQwenImage.from_pretrained(os.path.join(m, "vae"), dtype=torch.float32).eval()
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(m, "scheduler"))
    hidden = te.config.text_config.hidden_size if hasattr(te.config, "text_config") else te.config.hidden_size
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
                                              num_attention_heads=2, joint_attention_dim=hidden, guidance_embeds=False,
                                              axes_dims_rope=(4, 6, 6)).eval()
    failures = []

    def check(name, ours, theirs, start=None):
        e = rel_l2(ours, theirs, start)
        ok = e <= args.tol
        print(f"{'ok  ' if ok else 'FAIL'} {name}: rel L2 {e:.3e} (shape {tuple(theirs.shape)})")
        if not ok:
            failures.append(name)

    # 1. Text-to-image: our prompt embeddings instead of the pipeline's encode_prompt.
    pipe = QwenImagePipeline(scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok, transformer=transformer)
    prompt, h, w = "A cat sitting on a red sofa, oil painting", 64, 64
    # Every run starts from the same noise; errors are measured on what the two steps changed.
    x0 = torch.randn((1, (h // 16) * (w // 16), 64), generator=torch.Generator().manual_seed(7))
    common = dict(height=h, width=w, num_inference_steps=2, true_cfg_scale=4.0, output_type="latent", latents=x0)
    with torch.no_grad():
        theirs = pipe(prompt=prompt, negative_prompt=" ", generator=torch.Generator().manual_seed(7), **common).images
    emb_file = os.path.join(work, "embeds.safetensors")
    run([qwen_run, "encode", "--pack", pack, "--prompt", prompt, "--negative-prompt", " ", "--out", emb_file])
    e = load_file(emb_file)
    with torch.no_grad():
        ours = pipe(prompt_embeds=e["prompt_embeds"], prompt_embeds_mask=e["prompt_embeds_mask"],
                    negative_prompt_embeds=e["negative_prompt_embeds"], negative_prompt_embeds_mask=e["negative_prompt_embeds_mask"],
                    generator=torch.Generator().manual_seed(7), **common).images
    check("QwenImagePipeline: what the steps changed, with qwen-run's prompt_embeds", ours, theirs, x0)
    def one_percent_off(t):   # noise of 1% of the values' RMS (a uniform scale would be normalized away)
        return t + 0.01 * t.pow(2).mean().sqrt() * torch.randn(t.shape, generator=torch.Generator().manual_seed(5))

    with torch.no_grad():   # the output can tell: embeddings 1% off move it at least 10x more than ours do
        off = rel_l2(pipe(prompt_embeds=one_percent_off(e["prompt_embeds"]), prompt_embeds_mask=e["prompt_embeds_mask"],
                          negative_prompt_embeds=e["negative_prompt_embeds"], negative_prompt_embeds_mask=e["negative_prompt_embeds_mask"],
                          generator=torch.Generator().manual_seed(7), **common).images, theirs, x0)
    print(f"     (with the prompt embeddings 1% off: rel L2 {off:.3e})")
    if off <= 10 * rel_l2(ours, theirs, x0):
        failures.append("QwenImagePipeline: the prompt embeddings barely change the latents, the check proves nothing")

    # 2. Our VAE decodes the pipeline's latents like the pipeline does.
    packed = theirs
    z = pipe._unpack_latents(packed, h, w, pipe.vae_scale_factor)           # [1, 16, 1, h/8, w/8], normalized
    lat_file, sample_file = os.path.join(work, "latents.safetensors"), os.path.join(work, "sample.safetensors")
    save_file({"latents": z.contiguous()}, lat_file)
    run([qwen_run, "vae-decode", "--pack", pack, "--latents", lat_file, "--denormalize", "--out", sample_file])
    with torch.no_grad():
        image_pt = pipe(prompt_embeds=e["prompt_embeds"], prompt_embeds_mask=e["prompt_embeds_mask"],
                        negative_prompt_embeds=e["negative_prompt_embeds"], negative_prompt_embeds_mask=e["negative_prompt_embeds_mask"],
                        generator=torch.Generator().manual_seed(7), **{**common, "output_type": "pt"}).images
    ours_img = (load_file(sample_file)["sample"][:, :, 0] / 2 + 0.5).clamp(0, 1)
    check("vae-decode --denormalize of the pipeline's latents vs output_type='pt'", ours_img, image_pt)

    # 3. Our normalized latents in place of the edit pipelines' own VAE encoding.
    try:
        proc = Qwen2VLProcessor.from_pretrained(os.path.join(m, "processor"))
    except Exception:  # transformers 5.x without torchvision: skip only the unused video-processor check
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        class NoVideo(Qwen2VLProcessor):
            def check_argument_for_proper_class(self, argument_name, argument):
                return None if argument_name == "video_processor" and argument is None else \
                    super().check_argument_for_proper_class(argument_name, argument)
        proc = NoVideo(image_processor=Qwen2VLImageProcessorPil.from_pretrained(os.path.join(m, "processor")),
                       tokenizer=Qwen2Tokenizer.from_pretrained(os.path.join(m, "processor")), video_processor=None)
    # A 1024x1024 image: the pipelines' own resize (to a 1024² area) leaves it as it is, so both sides
    # encode the same pixels.
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    pil = Image.fromarray(base).resize((1024, 1024), Image.BILINEAR)
    png = os.path.join(work, "edit.png")
    pil.save(png)
    lat_edit = os.path.join(work, "edit_latents.safetensors")
    run([qwen_run, "vae-encode", "--pack", pack, "--image", png, "--normalize", "--out", lat_edit])
    ours_latents = load_file(lat_edit)["latents"]                           # [1, 16, 1, 128, 128]
    for cls, name in ((QwenImageEditPipeline, "QwenImageEditPipeline"), (QwenImageEditPlusPipeline, "QwenImageEditPlusPipeline")):
        ep = cls(scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok, processor=proc, transformer=transformer)
        images = pil if cls is QwenImageEditPipeline else [pil]
        with torch.no_grad():
            # The prompt side is the pipeline's own in both runs: only the image latents differ in origin.
            pe, pm = ep.encode_prompt("make it blue", images, device="cpu")
            x0e = torch.randn((1, 64 * 64, 64), generator=torch.Generator().manual_seed(11))
            edit = dict(prompt_embeds=pe, prompt_embeds_mask=pm, height=1024, width=1024, num_inference_steps=2,
                        true_cfg_scale=1.0, output_type="latent", latents=x0e)
            # Their run, recording what their own VAE encoding gave.
            own = ep._encode_vae_image
            theirs_latents = []
            ep._encode_vae_image = lambda image, generator: theirs_latents.append(own(image, generator)) or theirs_latents[-1]
            theirs_e = ep(image=images, generator=torch.Generator().manual_seed(11), **edit).images
            calls = []

            def ours_vae_encode(image, generator, _calls=calls):
                _calls.append(tuple(image.shape))
                return ours_latents.to(image.dtype)
            ep._encode_vae_image = ours_vae_encode
            ours_e = ep(image=images, generator=torch.Generator().manual_seed(11), **edit).images
            # The output can tell: latents 1% off move it at least 10x more than ours do.
            ep._encode_vae_image = lambda image, generator: one_percent_off(ours_latents).to(image.dtype)
            off = rel_l2(ep(image=images, generator=torch.Generator().manual_seed(11), **edit).images, theirs_e, x0e)
        check(f"{name}: qwen-run vae-encode --normalize vs the pipeline's _encode_vae_image", ours_latents, theirs_latents[0])
        if calls != [(1, 3, 1, 1024, 1024)]:
            failures.append(f"{name}: the pipeline encoded {calls}, expected one 1024x1024 image")
        e_out = rel_l2(ours_e, theirs_e, x0e)
        print(f"     (output with the latents 1% off: rel L2 {off:.3e}; with ours: {e_out:.3e})")
        if off <= 10 * e_out:
            failures.append(f"{name}: the image latents barely change the output ({off:.3e}), the output check proves nothing")
        check(f"{name}: what the steps changed, with qwen-run's vae-encode --normalize latents for the reference image", ours_e, theirs_e, x0e)

    gen2(args, run, check, failures, work, qwen_run, qwen_quant, one_percent_off, sched)

    if failures:
        sys.exit(f"FAIL: {len(failures)} check(s) above --tol {args.tol}: {', '.join(failures)}")
    print("diffusers round trip: all checks passed")
    return 0


def gen2(args, run, check, failures, work, qwen_run, qwen_quant, one_percent_off, sched):
    """Part 4: Qwen-Image 2.1 on the tiny gen2 fixture."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file, save_file
    from diffusers import AutoencoderKLQwenImage21, QwenImage21Pipeline, QwenImage21Transformer2DModel
    from transformers import Qwen2Tokenizer, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    m = os.path.join(ROOT, "Tests/Fixtures/gen2/model")
    pack = os.path.join(work, "gen2.pack")
    run([qwen_quant, "convert", m, "-o", pack, "--scheme", "f32"])
    te = Qwen3VLForConditionalGeneration.from_pretrained(os.path.join(m, "text_encoder"), dtype=torch.float32).eval()
    vae = AutoencoderKLQwenImage21.from_pretrained(os.path.join(m, "vae"), dtype=torch.float32).eval()
    pdir = os.path.join(m, "processor")
    tok, ip = Qwen2Tokenizer.from_pretrained(pdir), Qwen2VLImageProcessorPil.from_pretrained(pdir)
    chat = open(os.path.join(pdir, "chat_template.jinja")).read()
    try:
        proc = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=chat)
    except Exception:  # transformers 5.x without torchvision: skip only the unused video-processor check
        class NoVideo(Qwen3VLProcessor):
            def check_argument_for_proper_class(self, argument_name, argument):
                return None if argument_name == "video_processor" and argument is None else \
                    super().check_argument_for_proper_class(argument_name, argument)
        proc = NoVideo(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=chat)
    torch.manual_seed(0)
    z = vae.config.z_dim
    transformer = QwenImage21Transformer2DModel(patch_size=1, in_channels=z, out_channels=z, num_layers=2, attention_head_dim=16,
                                                num_attention_heads=2, context_in_dim=te.config.text_config.hidden_size,
                                                mlp_ratio=2, axes_dims_rope=(4, 6, 6)).eval()
    pipe = QwenImage21Pipeline(scheduler=sched, vae=vae, text_encoder=te, processor=proc, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)

    # 4a. Text-to-image embeddings in __call__.
    prompt, h, w = "A cat sitting on a red sofa, oil painting", 64, 64
    x0 = torch.randn((1, (h // 16) * (w // 16), z), generator=torch.Generator().manual_seed(7))
    common = dict(height=h, width=w, num_inference_steps=2, output_type="latent", latents=x0)
    with torch.no_grad():
        theirs = pipe(prompt=prompt, generator=torch.Generator().manual_seed(7), **common).images
    emb_file = os.path.join(work, "gen2_embeds.safetensors")
    run([qwen_run, "encode", "--pack", pack, "--prompt", prompt, "--out", emb_file])
    e = load_file(emb_file)
    with torch.no_grad():
        ours = pipe(prompt_embeds=e["prompt_embeds"], prompt_embeds_mask=e["prompt_embeds_mask"],
                    generator=torch.Generator().manual_seed(7), **common).images
        off = rel_l2(pipe(prompt_embeds=one_percent_off(e["prompt_embeds"]), prompt_embeds_mask=e["prompt_embeds_mask"],
                          generator=torch.Generator().manual_seed(7), **common).images, theirs, x0)
    check("QwenImage21Pipeline: what the steps changed, with qwen-run's prompt_embeds", ours, theirs, x0)
    print(f"     (with the prompt embeddings 1% off: rel L2 {off:.3e})")
    if off <= 10 * rel_l2(ours, theirs, x0):
        failures.append("QwenImage21Pipeline: the prompt embeddings barely change the latents, the check proves nothing")

    # 4b. Image-conditioned embeddings and image_pad_mask against encode_prompt with images (one RGBA).
    rng = np.random.default_rng(4)
    a = Image.fromarray(rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8), "RGB")
    rgba = rng.integers(0, 256, size=(96, 64, 4), dtype=np.uint8)
    rgba[:24, :, 3] = 0
    b = Image.fromarray(rgba, "RGBA")
    paths = [os.path.join(work, "g2a.png"), os.path.join(work, "g2b.png")]
    a.save(paths[0]); b.save(paths[1])
    ti2i = "Put the cat of <image1> on the sofa of <image2>"
    img_file = os.path.join(work, "gen2_image_embeds.safetensors")
    run([qwen_run, "encode", "--pack", pack, "--prompt", ti2i, "--image", paths[0], "--image", paths[1], "--preresize", "none",
         "--out", img_file])
    ei = load_file(img_file)
    with torch.no_grad():
        pe, pm, pad = pipe.encode_prompt(ti2i, image=[a, b], device="cpu")
        pe2, _, pad2 = pipe.encode_prompt(None, image=[a, b], prompt_embeds=ei["prompt_embeds"],
                                          prompt_embeds_mask=ei["prompt_embeds_mask"], image_pad_mask=ei["image_pad_mask"])
    check("QwenImage21Pipeline.encode_prompt with images vs qwen-run encode --image", ei["prompt_embeds"], pe)
    if not torch.equal(ei["image_pad_mask"], pad) or not torch.equal(pad2, pad) or not torch.equal(pe2, ei["prompt_embeds"]):
        failures.append("QwenImage21Pipeline: image_pad_mask differs, or encode_prompt did not take ours as they are")
    else:
        print(f"ok   QwenImage21Pipeline: image_pad_mask identical ({int(pad.sum())} image rows of {pad.shape[1]})")

    # 4c. Our VAE 2.1 decodes the pipeline's latents to its RGBA output.
    zl = pipe._unpack_latents(theirs, h, w, pipe.vae_scale_factor)        # [1, z, 1, h/16, w/16], normalized
    lat_file, sample_file = os.path.join(work, "gen2_latents.safetensors"), os.path.join(work, "gen2_sample.safetensors")
    save_file({"latents": zl.contiguous()}, lat_file)
    run([qwen_run, "vae-decode", "--pack", pack, "--latents", lat_file, "--denormalize", "--out", sample_file])
    with torch.no_grad():
        image_pt = pipe(prompt=prompt, generator=torch.Generator().manual_seed(7), **{**common, "output_type": "pt"}).images
    ours_img = (load_file(sample_file)["sample"][:, :, 0] / 2 + 0.5).clamp(0, 1)
    check("QwenImage21Pipeline: vae-decode --denormalize of its latents vs output_type='pt' (RGBA)", ours_img, image_pt)


if __name__ == "__main__":
    sys.exit(main())
