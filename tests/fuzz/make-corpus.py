#!/usr/bin/python3
"""Write the seed corpus of fuzz-safetensors (tests/fuzz/corpus/safetensors/).

Seeds are small: valid files (metadata, zero-dim and empty tensors, every
dtype, escapes), one file per kind of corruption the reader refuses, and
model-shaped headers: subsets of the tiny golden checkpoints' headers (original
SD 1.5 / SDXL naming, diffusers naming) so the fuzzer reaches the name maps and
architecture detection. Files named found-* are inputs libFuzzer found to
reach new code (tools/fuzz.sh, then -merge=1 against these seeds); this script
leaves them alone. Run from the repository root:
    /usr/bin/python3 tests/fuzz/make-corpus.py [GOLDEN_DIR GOLDEN_SDXL_DIR]
"""
import json
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def raw(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def file_bytes(header_text, data=b"", pad=True):
    h = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def laid_out(tensors, metadata=None, with_data=True):
    """tensors: list of (name, dtype, shape); a file with zero data, or only
    its header (the fuzz target's model stage accepts any data size)."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n * SIZES[dt]]}
        off += n * SIZES[dt]
    return file_bytes(json.dumps(header, separators=(",", ":")), bytes(off) if with_data else b"")


def t1(dtype, shape, b, e):
    return '{"t":{"dtype":"%s","shape":%s,"data_offsets":[%s,%s]}}' % (dtype, shape, b, e)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.startswith(("valid-", "corrupt-", "model-")):
            os.unlink(os.path.join(OUT, f))

    # Valid files.
    raw("valid-empty", file_bytes("{}"))
    raw("valid-metadata-zero-dim", file_bytes(
        '{"__metadata__":{"format":"pt"},"logit_scale":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
        '"empty":{"dtype":"F16","shape":[3,0],"data_offsets":[4,4]}}', b"\x00\x00\x80\x3f"))
    raw("valid-all-dtypes", laid_out([("f32", "F32", [2]), ("f16", "F16", [2, 1]), ("bf16", "BF16", [2]),
                                      ("f64", "F64", [1]), ("i64", "I64", [1, 1]), ("i32", "I32", [1]),
                                      ("i16", "I16", [1]), ("i8", "I8", [3]), ("u8", "U8", [1]),
                                      ("bool", "BOOL", [2])]))
    raw("valid-escapes", file_bytes('{"caf\\u00e9\\ud83d\\ude00\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"))
    raw("valid-gap-unaligned", file_bytes('{"a":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}}', bytes(9)))

    # One file per corruption.
    corrupt = {
        "empty": b"",
        "truncated-length": b"\x10\x00\x00",
        "header-past-eof": struct.pack("<Q", 100) + b"{}",
        "header-100MB": struct.pack("<Q", 100000000) + b"{}",
        "header-length-0": struct.pack("<Q", 0),
        "pickle": b"\x80\x02}q\x00(X\x0a\x00\x00\x00",
        "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        "latin1": file_bytes(b'{"caf\xe9":{}}'),
        "nul": file_bytes(b'{"a":{}}\x00   ', pad=False),
        "invalid-json": file_bytes('{"t": '),
        "non-object": file_bytes("[1, 2, 3]"),
        "trailing-garbage": file_bytes("{} x"),
        "comment": file_bytes("{/* c */}"),
        "hex": file_bytes(t1("F32", "[0x1]", 0, 4), bytes(4)),
        "leading-zero": file_bytes(t1("F32", "[01]", 0, 4), bytes(4)),
        "int-too-large": file_bytes(t1("F32", "[18446744073709551617]", 0, 4), bytes(4)),
        "nul-escape": file_bytes('{"a\\u0000b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', bytes(4)),
        "lone-surrogate": file_bytes('{"a\\ud800":{}}'),
        "deep-nesting": file_bytes('{"__metadata__":{"x":' + "[" * 40 + "]" * 40 + "}}"),
        "unknown-dtype": file_bytes(t1("X99", "[1]", 0, 4), bytes(4)),
        "unsupported-dtype": file_bytes(t1("F8_E4M3", "[4]", 0, 4), bytes(4)),
        "shape-overflow": file_bytes(t1("F32", "[4294967296, 4294967296, 16]", 0, 4), bytes(4)),
        "bytes-overflow": file_bytes(t1("F64", "[4611686018427387904]", 0, 4), bytes(4)),
        "size-mismatch": file_bytes(t1("F32", "[2, 2]", 0, 12), bytes(12)),
        "negative-dim": file_bytes(t1("F32", "[-1]", 0, 4), bytes(4)),
        "too-many-dims": file_bytes(t1("U8", "[1,1,1,1,1,1,1,1,1]", 0, 1), bytes(1)),
        "offsets-past-end": file_bytes(t1("F32", "[4]", 0, 16), bytes(8)),
        "offsets-far-past-end": file_bytes(t1("U8", "[1]", 9223372036854775806, 9223372036854775807), bytes(8)),
        "offsets-count": file_bytes('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', bytes(8)),
        "offsets-negative": file_bytes(t1("F32", "[1]", -4, 0), bytes(4)),
        "offsets-reversed": file_bytes(t1("F32", "[0]", 8, 4), bytes(8)),
        "overlap": file_bytes('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
                              '"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}', bytes(24)),
        "duplicate-names": file_bytes('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                      '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)),
        "duplicate-key": file_bytes('{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
        "entry-not-object": file_bytes('{"t":5}'),
        "metadata-not-string": file_bytes('{"__metadata__":{"epoch":3}}'),
    }
    for name, data in corrupt.items():
        raw("corrupt-" + name, data)

    # Model-shaped headers: subsets of the tiny golden checkpoints.
    if len(sys.argv) == 3:
        golden, golden_xl = sys.argv[1], sys.argv[2]
        sources = {
            "model-sd15-single": (os.path.join(golden, "sd15-tiny", "sd15-tiny.fp16.safetensors"), 9),
            "model-sdxl-single": (os.path.join(golden_xl, "sdxl-tiny", "sdxl-tiny.fp16.safetensors"), 11),
            "model-unet-diffusers": (os.path.join(golden, "sd15-tiny", "diffusers", "unet",
                                                  "diffusion_pytorch_model.safetensors"), 7),
            "model-vae-diffusers": (os.path.join(golden, "sd15-tiny", "diffusers", "vae",
                                                 "diffusion_pytorch_model.safetensors"), 3),
        }
        for name, (path, stride) in sources.items():
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                h = json.loads(f.read(n))
            meta = h.pop("__metadata__", None)
            keys = sorted(h)
            # Keep the anchors detection needs, then every stride-th tensor.
            keep = [k for i, k in enumerate(keys) if i % stride == 0 or k.endswith(
                ("conv_in.weight", "input_blocks.0.0.weight", "down_blocks.0.resnets.0.conv1.weight",
                 "input_blocks.1.0.in_layers.2.weight", "token_embedding.weight", "label_emb.0.0.weight",
                 "encoder.down.0.block.0.conv1.weight", "time_embed.0.weight"))]
            tensors = [(k, h[k]["dtype"], h[k]["shape"]) for k in keep]
            raw(name, laid_out(tensors, meta, with_data=False))


if __name__ == "__main__":
    main()
