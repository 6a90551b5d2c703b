#!/usr/bin/env python3
"""Reference outputs for the image geometry and PIL resamplers used by the vision preprocessing.

Writes Tests/Fixtures/refs/resize.safetensors (well under 1 MB):
  resize.srcN                     uint8 [H, W, 3]   synthetic source images (seeded numpy)
  resize.<filter>.<src>.<h>x<w>   uint8 [h, w, 3]   PIL Image.resize((w, h), filter) of that source
  rgba.src / rgba.white / rgba.lanczos.<h>x<w>   an RGBA source, its composite onto white, its RGBA resize
  geometry.sizes_hw               int64 [K, 2]      image sizes (height, width)
  geometry.smart_resize_hw        int64 [K, 2]      transformers' smart_resize(h, w) (factor 28, 3136, 12845056)
  geometry.edit_wh                int64 [K, 2]      diffusers calculate_dimensions(1024*1024, w/h)[:2] (Edit)
  geometry.editplus_cond_wh       int64 [K, 2]      diffusers calculate_dimensions(384*384, w/h) (Edit-Plus)
The geometry functions are executed from the installed upstream source files (their function
definitions are extracted with `ast`, so neither torch nor the full libraries need to import).

Usage: python make_resize_refs.py OUT.safetensors     (pillow 13.0.0, numpy, safetensors,
       transformers 5.24.0 and diffusers 0.42.1 installed with --no-deps)
"""
import ast
import importlib.util
import math
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import save_file


def upstream_function(package, relpath, name):
    spec = importlib.util.find_spec(package)
    path = os.path.join(os.path.dirname(spec.origin), relpath)
    tree = ast.parse(open(path).read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    ns = {"math": math}
    exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), ns)
    return ns[name]


def synth(h, w, seed):
    """Smooth gradients, hard edges, saturated patches and noise: exercises the clip in the resamplers."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 255 * x / max(w - 1, 1)
    img[..., 1] = 127.5 + 127.5 * np.sin(y / 3.1) * np.cos(x / 5.3)
    img[..., 2] = np.where((x // 7 + y // 5) % 2 == 0, 255.0, 0.0)
    img += rng.normal(0, 25, size=img.shape)
    img[h // 3: h // 3 + 6, :, :] = 255.0
    img[:, w // 4: w // 4 + 3, 1] = 0.0
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main():
    out = sys.argv[1]
    tensors = {}
    sources = {"src0": synth(98, 126, 1), "src1": synth(47, 61, 2), "src2": synth(200, 300, 3)}
    for k, v in sources.items():
        tensors[f"resize.{k}"] = v
    cases = [
        ("bicubic", "src0", 112, 112), ("bicubic", "src1", 56, 84), ("bicubic", "src2", 56, 84),
        ("bicubic", "src2", 84, 140), ("bicubic", "src1", 47, 61),
        ("lanczos", "src2", 64, 96), ("lanczos", "src1", 160, 224), ("lanczos", "src0", 96, 128),
        ("lanczos", "src2", 200, 96),
        # Pillow >= 12 resizes vertically first when the height loses more than twice as many pixels as
        # the width: 98x126 -> 60x110 / 60x108 (vertical first), 60x107 (the boundary: horizontal first).
        ("bicubic", "src0", 60, 110), ("lanczos", "src0", 60, 108), ("lanczos", "src0", 60, 107),
    ]
    filt = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    for f, src, h, w in cases:
        im = Image.fromarray(sources[src], "RGB").resize((w, h), resample=filt[f])
        tensors[f"resize.{f}.{src}.{h}x{w}"] = np.asarray(im).copy()

    # RGBA: transformers' convert_to_rgb composites transparency onto white; PIL resizes RGBA through
    # premultiplied RGBa. rgba.src is the source, rgba.white its composite, rgba.lanczos.* the RGBA resize.
    rgba = np.concatenate([sources["src1"], synth(47, 61, 4)[..., :1]], axis=2)
    rgba[:5, :, 3] = 0
    rgba[-5:, :, 3] = 255
    tensors["rgba.src"] = rgba
    def on_white(im):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, im.convert("RGBA")).convert("RGB")).copy()
    src_im = Image.fromarray(rgba, "RGBA")
    tensors["rgba.white"] = on_white(src_im)
    for h, w in [(96, 128), (32, 40)]:
        r = src_im.resize((w, h), resample=Image.Resampling.LANCZOS)
        tensors[f"rgba.lanczos.{h}x{w}"] = np.asarray(r).copy()

    smart_resize = upstream_function("transformers", "models/qwen2_vl/image_processing_pil_qwen2_vl.py", "smart_resize")
    cd_edit = upstream_function("diffusers", "pipelines/qwenimage/pipeline_qwenimage_edit.py", "calculate_dimensions")
    cd_plus = upstream_function("diffusers", "pipelines/qwenimage/pipeline_qwenimage_edit_plus.py", "calculate_dimensions")
    sizes = [(112, 140), (98, 126), (1024, 1024), (1000, 1000), (3000, 4000), (4000, 3000), (1080, 1920),
             (33, 45), (42, 70), (14, 14), (70, 42), (5000, 6000), (4096, 4096), (200, 7), (255, 511),
             (1234, 567), (98, 98), (1, 100), (28, 5599), (3584, 3584), (3585, 3585), (5120, 2880)]
    srz, ed, ep = [], [], []
    for h, w in sizes:
        try:
            srz.append(list(smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=12845056)))
        except ValueError:
            srz.append([-1, -1])  # upstream refuses (aspect ratio above 200)
        ed.append(list(cd_edit(1024 * 1024, w / h)[:2]))
        ep.append(list(cd_plus(384 * 384, w / h)))
    tensors["geometry.sizes_hw"] = np.array(sizes, dtype=np.int64)
    tensors["geometry.smart_resize_hw"] = np.array(srz, dtype=np.int64)
    tensors["geometry.edit_wh"] = np.array(ed, dtype=np.int64)
    tensors["geometry.editplus_cond_wh"] = np.array(ep, dtype=np.int64)
    save_file(tensors, out)
    print(out, os.path.getsize(out), "bytes,", len(tensors), "tensors")


if __name__ == "__main__":
    main()
