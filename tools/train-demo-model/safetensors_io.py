"""Minimal safetensors reader/writer (numpy + struct only; there is no
safetensors package in Debian 12).

Format (https://github.com/huggingface/safetensors): 8-byte little-endian
header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
"__metadata__": {str: str}}, then the raw little-endian tensor bytes; offsets
are relative to the end of the header.
"""
import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def load(path, names=None):
    """Return (dict name -> numpy array, metadata dict)."""
    header, base = read_header(path)
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if names is not None and name not in names:
                continue
            b, e = info["data_offsets"]
            f.seek(base + b)
            raw = f.read(e - b)
            arr = np.frombuffer(raw, dtype=_DTYPES[info["dtype"]]).copy()
            out[name] = arr.reshape(info["shape"])
    return out, meta


def save(path, tensors, metadata=None):
    """Write tensors (dict name -> numpy array). Like the golden files, tensors
    are stored largest element size first, then by name, so every tensor is
    naturally aligned; the header is padded with spaces to a multiple of 8."""
    items = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        items.append((name, arr))
    items.sort(key=lambda kv: (-kv[1].dtype.itemsize, kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    off = 0
    for name, arr in items:
        nbytes = arr.nbytes
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + nbytes]}
        off += nbytes
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, arr in items:
            f.write(arr.tobytes())
