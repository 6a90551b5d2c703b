"""Small PNG / JPEG files and the pixels PIL decodes from them, for the Swift image I/O tests.

Usage: python make_image_fixtures.py OUT_DIR      (writes OUT_DIR/*.png, *.jpg, expected.safetensors)
Needs pillow (13.0.0 was used), numpy, safetensors. Deterministic (seeded; PIL's encoders are).

expected.safetensors holds, for every good file NAME, `NAME.rgb` = np.asarray(Image.open(f).convert("RGB"))
and `NAME.rgba` = ...convert("RGBA") as uint8 [H, W, 3|4]. Files named bad_* must fail to decode.
PNG variants PIL cannot write (1/2/4-bit gray, 16-bit colour, colour keys, Adam7 interlacing, broken
files) are written by the small encoder below, straight from the PNG specification.
"""
import io, struct, sys, zlib, os
import numpy as np
from PIL import Image, ImageOps
from safetensors.numpy import save_file

rng = np.random.default_rng(20261127)
W, H = 13, 7          # odd sizes: row strides and partial JPEG blocks
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
expected = {}


def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples: [h, w*channels] integers -> list of packed row bytes."""
    rows = []
    for r in samples:
        if bit_depth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in r))
        elif bit_depth == 8:
            rows.append(bytes(int(v) for v in r))
        else:
            per = 8 // bit_depth
            b = bytearray()
            for i in range(0, len(r), per):
                byte = 0
                for j in range(per):
                    v = int(r[i + j]) if i + j < len(r) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                b.append(byte)
            rows.append(bytes(b))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(pixels, color_type, bit_depth, extra=b"", interlace=False):
    """pixels: [h, w, c] integer array in the file's units."""
    h, w, c = pixels.shape
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += b"".join(b"\x00" + r for r in pack_rows(sub.reshape(sub.shape[0], -1), bit_depth))
    else:
        raw = b"".join(b"\x00" + r for r in pack_rows(pixels.reshape(h, -1), bit_depth))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def add(name, data):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    if name.startswith("bad_"):
        try:
            Image.open(path).convert("RGB")
        except Exception as e:       # PIL refuses it too
            print(f"{name}: PIL: {type(e).__name__}: {e}")
            return
        raise SystemExit(f"{name}: PIL decodes it, expected a failure")
    im = Image.open(path)
    key = name.rsplit(".", 1)[0]
    expected[key + ".rgb"] = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    expected[key + ".rgba"] = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGBA"), dtype=np.uint8))
    print(f"{name}: {len(data)} bytes, PIL mode {im.mode}")


def pil_bytes(image, fmt, **kw):
    b = io.BytesIO()
    image.save(b, fmt, **kw)
    return b.getvalue()


def rand(shape, hi):
    return rng.integers(0, hi, size=shape, endpoint=True)


# 8-bit images PIL writes itself.
rgb = rand((H, W, 3), 255).astype(np.uint8)
rgba = rand((H, W, 4), 255).astype(np.uint8)
gray = rand((H, W), 255).astype(np.uint8)
add("rgb8.png", pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"))
add("rgba8.png", pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
add("gray8.png", pil_bytes(Image.fromarray(gray, "L"), "PNG"))
add("la8.png", pil_bytes(Image.fromarray(rgba[:, :, :2].copy(), "LA"), "PNG"))
pal = Image.fromarray(rgb, "RGB").quantize(colors=7)
add("pal8.png", pil_bytes(pal, "PNG"))
pal_t = pal.copy()
pal_t.info["transparency"] = bytes([0, 64, 128, 200])   # entries 4.. stay opaque
add("pal8_trns.png", pil_bytes(pal_t, "PNG", transparency=bytes([0, 64, 128, 200])))
add("pal4.png", pil_bytes(pal, "PNG", bits=4))
add("gray1.png", pil_bytes(Image.fromarray(gray > 127).convert("1"), "PNG"))

# Low bit depths, 16 bits, colour keys, interlacing (our encoder).
add("gray2.png", png_bytes(rand((H, W, 1), 3), 0, 2))
add("gray4.png", png_bytes(rand((H, W, 1), 15), 0, 4))
add("gray2_trns.png", png_bytes(rand((H, W, 1), 3), 0, 2, chunk(b"tRNS", struct.pack(">H", 2))))
g16 = rand((H, W, 1), 65535)
g16[0, :6, 0] = [0, 7, 255, 256, 300, 65535]    # the clipping corner of PIL's I;16 conversion
add("gray16.png", png_bytes(g16, 0, 16))
add("rgb16.png", png_bytes(rand((H, W, 3), 65535), 2, 16))
add("rgba16.png", png_bytes(rand((H, W, 4), 65535), 6, 16))
add("la16.png", png_bytes(rand((H, W, 2), 65535), 4, 16))
g8k = rand((H, W, 1), 255); g8k[0, :3, 0] = 77
add("gray8_trns.png", png_bytes(g8k, 0, 8, chunk(b"tRNS", struct.pack(">H", 77))))
c8k = rand((H, W, 3), 255); c8k[1, 2:5] = (10, 20, 30)
add("rgb8_trns.png", png_bytes(c8k, 2, 8, chunk(b"tRNS", struct.pack(">HHH", 10, 20, 30))))
g16k = rand((H, W, 1), 65535); g16k[0, :3, 0] = [5, 261, 65535]
add("gray16_trns.png", png_bytes(g16k, 0, 16, chunk(b"tRNS", struct.pack(">H", 261))))
c16k = rand((H, W, 3), 65535); c16k[2, :2] = [(0x0A00, 0x1400, 0x1E00), (0x0A0A, 0x1414, 0x1E1E)]
add("rgb16_trns.png", png_bytes(c16k, 2, 16, chunk(b"tRNS", struct.pack(">HHH", 0x0A0A, 0x1414, 0x1E1E))))
add("rgb8_adam7.png", png_bytes(rgb.astype(np.int64), 2, 8, interlace=True))
add("rgba16_adam7.png", png_bytes(rand((H, W, 4), 65535), 6, 16, interlace=True))
add("gray1_trns.png", png_bytes(rand((H, W, 1), 1), 0, 1, chunk(b"tRNS", struct.pack(">H", 1))))

# JPEG: 4:4:4, 4:2:2, 4:2:0, progressive, grayscale (odd sizes: partial MCUs on both edges).
JW, JH = 37, 23
yy, xx = np.mgrid[0:JH, 0:JW]
photo = np.stack([(xx * 7 + yy * 3) % 256, (xx * 2 + yy * 11) % 256, (xx * yy) % 256], -1).astype(np.uint8)
photo = np.clip(photo.astype(np.int64) + rand((JH, JW, 3), 40) - 20, 0, 255).astype(np.uint8)
pim = Image.fromarray(photo, "RGB")
add("jpeg444.jpg", pil_bytes(pim, "JPEG", quality=90, subsampling=0))
add("jpeg422.jpg", pil_bytes(pim, "JPEG", quality=90, subsampling=1))
add("jpeg420.jpg", pil_bytes(pim, "JPEG", quality=75, subsampling=2))
add("jpeg420_progressive.jpg", pil_bytes(pim, "JPEG", quality=80, subsampling=2, progressive=True))
add("jpeg_gray.jpg", pil_bytes(pim.convert("L"), "JPEG", quality=85))
# A 12-bit JPEG header (SOF1, precision 12): PIL and we refuse it.
j12 = bytearray(pil_bytes(pim.convert("L"), "JPEG", quality=85))
sof = j12.index(b"\xff\xc0")
j12[sof + 1] = 0xC1
j12[sof + 4] = 12
add("bad_12bit.jpg", bytes(j12))

# EXIF orientation: expected pixels after ImageOps.exif_transpose (diffusers' load_image), as NAME.upright.
def add_oriented(name, data):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    expected[name.rsplit(".", 1)[0] + ".upright"] = np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    print(f"{name}: {len(data)} bytes, upright {im.size}")


for k in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = k
    add_oriented(f"orient{k}.png", pil_bytes(Image.fromarray(rgb, "RGB"), "PNG", exif=exif.tobytes()))
exif = Image.Exif()
exif[0x0112] = 6
add_oriented("orient6_jpeg.jpg", pil_bytes(pim, "JPEG", quality=90, exif=exif.tobytes()))

# Files both PIL and we must refuse.
good = pil_bytes(Image.fromarray(rgb, "RGB"), "PNG")
add("bad_truncated.png", good[: len(good) // 2])
jpg = pil_bytes(pim, "JPEG", quality=90)
add("bad_truncated.jpg", jpg[: len(jpg) // 2])
ihdr0 = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
add("bad_zero_width.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr0) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
idat = zlib.compress(b"\x00" * (3 * W + 1) * H)
ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
add("bad_zlib.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c\xff\xff\xff" + idat[5:]) + chunk(b"IEND", b""))
ihdr_crc = chunk(b"IHDR", ihdr)
add("bad_crc.png", b"\x89PNG\r\n\x1a\n" + ihdr_crc[:-1] + bytes([ihdr_crc[-1] ^ 1]) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
cmyk = np.concatenate([255 - photo, rand((JH, JW, 1), 255)], -1).astype(np.uint8)
add("jpeg_cmyk.jpg", pil_bytes(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=90))
# A huge declared size with no data: must be refused before any allocation.
big = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
with open(os.path.join(out, "huge_header.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", big) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))

save_file(expected, os.path.join(out, "expected.safetensors"))
print("expected.safetensors:", os.path.getsize(os.path.join(out, "expected.safetensors")), "bytes,", len(expected), "tensors")
