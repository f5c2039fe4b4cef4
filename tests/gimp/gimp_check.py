#!/usr/bin/python3
"""Pixel checks and helpers for tests/gimp/gimp-test.sh (test code only).

  gimp_check.py make-input OUT.png W H            a deterministic test picture
  gimp_check.py unchanged-outside ORIG FLAT MASK X Y [MIN_CHANGED]
        FLAT equals ORIG, pixel for pixel, wherever the layer mask MASK (a
        grayscale PNG placed at X,Y in the image) is 0 or outside it; and at
        least MIN_CHANGED (default 1) pixels where the mask is 255 changed.
  gimp_check.py mask-is-rect MASK X Y RX RY RW RH  the mask is 255 exactly on
        the rectangle (image coordinates) and 0 elsewhere
  gimp_check.py mask-stats MASK                    prints: full partial zero
  gimp_check.py mask-equals-selection MASK X Y SELECTION
        the layer mask (at X,Y) holds exactly the values of SELECTION (an
        image-size mask PNG: GIMP's own mask from the selection), which is 0
        outside the layer
  gimp_check.py same A B                           identical pixels
  gimp_check.py differs A B MIN                    at least MIN pixels differ
  gimp_check.py size FILE W H
  gimp_check.py wait-job SOCKET TIMEOUT            wait until the backend on the
        unix socket is at sampling step >= 1 of a job (exit 1 on timeout)
"""
import http.client
import json
import socket
import sys
import time

from PIL import Image


def load_rgb(path):
    im = Image.open(path)
    return im.convert("RGB")


def load_mask(path):
    """A grayscale PNG as 8-bit L; 16-bit ones (GIMP 3 exports linear 8-bit
    images as 16-bit PNG) are scaled back exactly (v = round(v16 / 257))."""
    m = Image.open(path)
    if m.mode in ("I", "I;16", "I;16B"):
        out = Image.new("L", m.size)
        out.putdata([min(255, (int(v) + 128) // 257) for v in m.getdata()])
        return out
    return m.convert("L")


def make_input(out, w, h):
    im = Image.new("RGB", (w, h))
    px = im.load()
    seed = 12345
    for y in range(h):
        for x in range(w):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            px[x, y] = ((x * 255) // w, (y * 255) // h, (x * y + (seed >> 16) % 40) % 256)
    im.save(out)


def unchanged_outside(orig, flat, mask, mx, my, min_changed=1):
    a, b = load_rgb(orig), load_rgb(flat)
    m = load_mask(mask)
    if a.size != b.size:
        sys.exit(f"size differs: {a.size} vs {b.size}")
    pa, pb, pm = a.load(), b.load(), m.load()
    w, h = a.size
    outside_diff, inside_changed, n_out = 0, 0, 0
    first = None
    for y in range(h):
        for x in range(w):
            lx, ly = x - mx, y - my
            v = pm[lx, ly] if 0 <= lx < m.size[0] and 0 <= ly < m.size[1] else 0
            if v == 0:
                n_out += 1
                if pa[x, y] != pb[x, y]:
                    outside_diff += 1
                    first = first or (x, y, pa[x, y], pb[x, y])
            elif v == 255 and pa[x, y] != pb[x, y]:
                inside_changed += 1
    print(f"outside the mask: {n_out} pixels, {outside_diff} changed; inside: {inside_changed} changed")
    if outside_diff:
        sys.exit(f"FAIL: {outside_diff} pixels changed outside the mask, first {first}")
    if inside_changed < min_changed:
        sys.exit(f"FAIL: only {inside_changed} pixels changed inside the mask (want >= {min_changed})")


def mask_is_rect(mask, mx, my, rx, ry, rw, rh):
    m = load_mask(mask)
    pm = m.load()
    bad = 0
    for y in range(m.size[1]):
        for x in range(m.size[0]):
            ix, iy = x + mx, y + my
            want = 255 if rx <= ix < rx + rw and ry <= iy < ry + rh else 0
            if pm[x, y] != want:
                bad += 1
    print(f"mask {m.size} at {mx},{my}: {bad} pixels differ from the rectangle")
    if bad:
        sys.exit("FAIL: the layer mask is not the selection")


def mask_stats(mask):
    m = load_mask(mask)
    d = list(m.getdata())
    print(sum(v == 255 for v in d), sum(0 < v < 255 for v in d), sum(v == 0 for v in d))


def mask_equals_selection(mask, mx, my, sel):
    m, s = load_mask(mask), load_mask(sel)
    pm, ps = m.load(), s.load()
    bad, first = 0, None
    for y in range(s.size[1]):
        for x in range(s.size[0]):
            lx, ly = x - mx, y - my
            v = pm[lx, ly] if 0 <= lx < m.size[0] and 0 <= ly < m.size[1] else 0
            if v != ps[x, y]:
                bad += 1
                first = first or (x, y, v, ps[x, y])
    partial = sum(0 < v < 255 for v in s.getdata())
    print(f"layer mask vs selection: {bad} pixels differ ({partial} partial selection pixels)")
    if bad:
        sys.exit(f"FAIL: the layer mask is not the selection, first (x, y, mask, selection) {first}")


def same(a, b):
    ia, ib = load_rgb(a), load_rgb(b)
    if ia.size != ib.size or list(ia.getdata()) != list(ib.getdata()):
        n = sum(p != q for p, q in zip(ia.getdata(), ib.getdata())) if ia.size == ib.size else -1
        sys.exit(f"FAIL: {a} and {b} differ ({n} pixels; sizes {ia.size} {ib.size})")
    print(f"identical: {a} {b}")


def differs(a, b, n):
    ia, ib = load_rgb(a), load_rgb(b)
    d = sum(p != q for p, q in zip(ia.getdata(), ib.getdata()))
    print(f"{d} pixels differ")
    if d < n:
        sys.exit(f"FAIL: only {d} pixels differ (want >= {n})")


def size(path, w, h):
    s = Image.open(path).size
    if s != (w, h):
        sys.exit(f"FAIL: {path} is {s}, want {(w, h)}")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def wait_job(sock, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = UnixConnection(sock)
            c.request("GET", "/sdapi/v1/progress?skip_current_image=true")
            p = json.loads(c.getresponse().read())
            c.close()
            if p.get("current_task") and p.get("state", {}).get("sampling_step", 0) >= 1:
                print(f"job running: {p.get('current_task')} step {p['state']['sampling_step']}")
                return
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    sys.exit("FAIL: no job seen running on the backend")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-input":
        make_input(args[0], int(args[1]), int(args[2]))
    elif cmd == "unchanged-outside":
        unchanged_outside(args[0], args[1], args[2], int(args[3]), int(args[4]),
                          int(args[5]) if len(args) > 5 else 1)
    elif cmd == "mask-is-rect":
        mask_is_rect(args[0], *map(int, args[1:7]))
    elif cmd == "mask-equals-selection":
        mask_equals_selection(args[0], int(args[1]), int(args[2]), args[3])
    elif cmd == "mask-stats":
        mask_stats(args[0])
    elif cmd == "same":
        same(args[0], args[1])
    elif cmd == "differs":
        differs(args[0], args[1], int(args[2]))
    elif cmd == "size":
        size(args[0], int(args[1]), int(args[2]))
    elif cmd == "wait-job":
        wait_job(args[0], float(args[1]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
