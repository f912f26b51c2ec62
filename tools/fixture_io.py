"""Writing safetensors files for the fixture generators (tools/fixtures_*.py), with the
reference layout: compact JSON header in insertion order, padded with spaces to a multiple
of 8 bytes, data in the same order."""
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16", torch.float16: "F16",
          torch.int64: "I64", torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8"}


def save_safetensors(path, tensors, metadata=None):
    """The reference layout: compact JSON header in insertion order, padded with spaces to a
    multiple of 8 bytes, data in the same order."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        # numpy has no bfloat16: write its bits through an int16 view
        data = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
