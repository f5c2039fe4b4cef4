#!/usr/bin/python3
"""Write the seed corpus of fuzz-api-request (tests/fuzz/corpus/api-request/).

Each file is one byte selecting the endpoint (0 txt2img, 1 img2img) followed by
a request body: valid AUTOMATIC1111 requests, and one per class of bad input
the server refuses (types, values, JSON, base64, PNGs). Run from anywhere:
    /usr/bin/python3 tests/fuzz/make-api-corpus.py
"""
import base64
import io
import json
import os
import struct
import zlib

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "api-request")


def png(w, h, mode="RGB", color=(10, 20, 30)):
    b = io.BytesIO()
    Image.new(mode, (w, h), color).save(b, "PNG")
    return base64.b64encode(b.getvalue()).decode()


def w(name, endpoint, body):
    data = (b"\x01" if endpoint == "img2img" else b"\x00") + (body if isinstance(body, bytes) else body.encode())
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def main():
    os.makedirs(OUT, exist_ok=True)
    w("txt2img_minimal", "txt2img", "{}")
    w("txt2img_full", "txt2img", json.dumps({
        "prompt": "a (red:1.2) apple", "negative_prompt": "blurry", "seed": 42, "steps": 20,
        "cfg_scale": 7.5, "width": 512, "height": 512, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "batch_size": 2, "n_iter": 2,
        "override_settings": {"sd_model_checkpoint": "x.safetensors [abc]", "CLIP_stop_at_last_layers": 2},
        "force_task_id": "t1", "unknown_field": [1, 2, {"a": None}], "enable_hr": False}))
    w("txt2img_types", "txt2img", json.dumps({"steps": "20", "cfg_scale": True, "width": 64.0, "seed": -1,
                                              "sampler_index": "Euler"}))
    w("txt2img_bad_values", "txt2img", json.dumps({"steps": 0, "width": 65, "seed": -5, "batch_size": 1000,
                                                   "sampler_name": "nope"}))
    w("txt2img_nulls", "txt2img", json.dumps({"prompt": None, "steps": None, "override_settings": None}))
    w("txt2img_nested", "txt2img", '{"a":' + "[" * 100 + "]" * 100 + "}")
    w("txt2img_malformed", "txt2img", '{"prompt": "x", ')
    w("txt2img_not_object", "txt2img", "[1,2,3]")
    w("txt2img_utf8", "txt2img", b'{"prompt":"\xff\xfe"}')
    w("txt2img_unicode_escapes", "txt2img", r'{"prompt":"\u0000\ud800 caf\u00e9"}')
    w("txt2img_big_numbers", "txt2img", '{"seed":18446744073709551616,"steps":1e308,"width":-0.0,"cfg_scale":1e400}')
    w("img2img_init", "img2img", json.dumps({"init_images": [png(64, 64)], "denoising_strength": 0.6,
                                             "width": 64, "height": 64, "steps": 4}))
    w("img2img_mask", "img2img", json.dumps({
        "init_images": ["data:image/png;base64," + png(64, 64)], "mask": png(64, 64, "L", 255), "mask_blur": 4,
        "inpainting_mask_invert": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 32,
        "width": 64, "height": 64, "steps": 2, "denoising_strength": 1}))
    w("img2img_mask_rgba", "img2img", json.dumps({"init_images": [png(32, 32)],
                                                  "mask": png(32, 32, "RGBA", (0, 0, 0, 128)),
                                                  "width": 64, "height": 64}))
    w("img2img_mask_size", "img2img", json.dumps({"init_images": [png(64, 64)], "mask": png(32, 32, "L", 255),
                                                  "width": 64, "height": 64}))
    w("img2img_bad_base64", "img2img", json.dumps({"init_images": ["!!!notbase64***"]}))
    w("img2img_not_png", "img2img", json.dumps({"init_images": [
        base64.b64encode(b"\xff\xd8\xff\xe0JFIF\x00 not really a jpeg").decode()]}))
    raw = base64.b64decode(png(16, 16))
    corrupt = raw[:40] + bytes([raw[40] ^ 0xFF]) + raw[41:]
    w("img2img_corrupt_png", "img2img", json.dumps({"init_images": [base64.b64encode(corrupt).decode()]}))
    w("img2img_truncated_png", "img2img", json.dumps({"init_images": [base64.b64encode(raw[:50]).decode()]}))
    huge = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    w("img2img_huge_png", "img2img", json.dumps({"init_images": [base64.b64encode(huge).decode()]}))
    w("img2img_empty", "img2img", json.dumps({"init_images": []}))
    w("img2img_wrong_types", "img2img", json.dumps({"init_images": "abc", "mask": 5, "inpaint_full_res": "yes"}))
    w("img2img_url", "img2img", json.dumps({"init_images": ["https://example.com/a.png"]}))


if __name__ == "__main__":
    main()
