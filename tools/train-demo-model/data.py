#!/usr/bin/python3
"""The training data: Noto Color Emoji (SIL Open Font License 1.1) rendered on
white at 64x64, captioned with Unicode emoji names (emoji-test.txt, Unicode
License v3) and CLDR English keywords (annotations, Unicode License v3).

  data.py build [--out work/data]    render + captions (a few minutes)
  data.py grid  [--out work/data]    contact sheet PNG of the rendered set

Files written:
  emoji.npy      uint8 [N, 64, 64, 3], glyph scaled to 56x56 and centred
  emoji.json     per image: emoji, name, keywords, group, subgroup, flip_ok
  captions.txt   one full caption per image ("red apple, apple, fruit, red")
"""
import argparse
import json
import os
import random
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
CLDR = ["/usr/share/unicode/cldr/common/annotations/en.xml",
        "/usr/share/unicode/cldr/common/annotationsDerived/en.xml"]
SIZE = 64
GLYPH = 56           # glyph box inside the 64x64 frame: leaves room for shifts
SKIN_TONES = set(range(0x1F3FB, 0x1F400))

# Mirroring changes the meaning of text, arrows, flags, keycaps, clocks and
# anything pointing or facing a direction; those are never flipped.
NO_FLIP_GROUPS = {"Symbols", "Flags"}
NO_FLIP_SUBGROUPS = {"hand-single-finger", "arrow", "keycap", "alphanum", "av-symbol",
                     "time", "transport-sign", "warning", "money", "book-paper", "mail",
                     "writing", "office", "zodiac", "geometric", "other-symbol", "math",
                     "punctuation", "currency", "sky & weather", "light & video",
                     "computer", "phone", "music", "musical-instrument", "game"}
NO_FLIP_WORDS = re.compile(r"\b(left|right|pointing|clock|o.clock|thirty|letter|sign|"
                           r"button|symbol|mark|text|writing|newspaper|calendar|page|"
                           r"scroll|ledger|notebook|book|books|label|ticket|receipt|"
                           r"input|flag|keycap|ab|abc|id|sos|ok|cool|free|new|ng|up|vs|"
                           r"top|soon|on|end|back)\b")


def parse_emoji_test():
    out = []
    group = subgroup = None
    for line in open(EMOJI_TEST, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
            continue
        if not line or line.startswith("#"):
            continue
        cps, rest = line.split(";", 1)
        status, comment = rest.split("#", 1)
        if status.strip() != "fully-qualified" or group == "Component":
            continue
        cps = [int(c, 16) for c in cps.split()]
        if SKIN_TONES & set(cps):
            continue
        # comment: "<emoji> E<version> <name>"
        m = re.match(r"\s*(\S+)\s+E\d+\.\d+\s+(.*)$", comment)
        out.append(dict(emoji="".join(chr(c) for c in cps), name=m.group(2).strip(),
                        group=group, subgroup=subgroup))
    return out


def parse_cldr():
    kw = {}
    pat = re.compile(r'<annotation cp="([^"]+)"(?: type="tts")?>([^<]*)</annotation>')
    for path in CLDR:
        for line in open(path, encoding="utf-8"):
            m = pat.search(line)
            if not m or 'type="tts"' in line:
                continue
            cp = _unescape(m.group(1))
            words = [w.strip() for w in _unescape(m.group(2)).split("|") if w.strip()]
            kw.setdefault(cp, words)
    return kw


def _unescape(s):
    return (s.replace("&amp;", "&").replace("&quot;", '"').replace("&apos;", "'")
            .replace("&lt;", "<").replace("&gt;", ">"))


def norm_text(s):
    s = s.lower().replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    s = s.replace(": ", ", ")
    # captions are ASCII so the product tokenizer needs no ftfy/unicode tables:
    # fold the few accented letters in names ("piñata", "café")
    import unicodedata
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return s.encode("ascii", "ignore").decode("ascii").strip()


def render(font, emoji):
    """-> uint8 [64, 64, 3] or None when the font has no single glyph for it."""
    from PIL import Image, ImageDraw
    bb = font.getbbox(emoji, mode="RGBA")
    w, h = bb[2] - bb[0], bb[3] - bb[1]
    if w <= 0 or h <= 0 or w > 140 or h > 140:
        return None  # missing ligature: the font draws several glyphs
    side = max(w, h)
    im = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    ImageDraw.Draw(im).text(((side - w) // 2 - bb[0], (side - h) // 2 - bb[1]), emoji,
                            font=font, embedded_color=True)
    if im.getextrema()[3][1] == 0:
        return None  # nothing drawn
    bg = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    bg.alpha_composite(im)
    g = bg.convert("RGB").resize((GLYPH, GLYPH), Image.LANCZOS)
    frame = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    off = (SIZE - GLYPH) // 2
    frame.paste(g, (off, off))
    return np.asarray(frame, dtype=np.uint8)


def flip_ok(e):
    if e["group"] in NO_FLIP_GROUPS or e["subgroup"] in NO_FLIP_SUBGROUPS:
        return False
    return not NO_FLIP_WORDS.search(e["name"].lower())


def build(out):
    from PIL import ImageFont
    os.makedirs(out, exist_ok=True)
    font = ImageFont.truetype(FONT, size=109, layout_engine=ImageFont.Layout.RAQM)
    kw = parse_cldr()
    entries, images = [], []
    skipped = []
    for e in parse_emoji_test():
        img = render(font, e["emoji"])
        if img is None:
            skipped.append(e["name"])
            continue
        key = e["emoji"].replace("\ufe0f", "")
        name = norm_text(e["name"])
        words = []
        for w in kw.get(key, kw.get(e["emoji"], [])):
            w = norm_text(w)
            if w and w != name and w not in words:
                words.append(w)
        entries.append(dict(emoji=e["emoji"], name=name, keywords=words, group=e["group"],
                            subgroup=e["subgroup"], flip_ok=flip_ok(e)))
        images.append(img)
    np.save(os.path.join(out, "emoji.npy"), np.stack(images))
    with open(os.path.join(out, "emoji.json"), "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=0)
    with open(os.path.join(out, "captions.txt"), "w", encoding="utf-8") as f:
        for e in entries:
            f.write(full_caption(e) + "\n")
    print("data: %d images (%d flippable), %d skipped (no glyph): %s" %
          (len(entries), sum(e["flip_ok"] for e in entries), len(skipped), skipped[:10]))


def full_caption(e):
    return ", ".join([e["name"]] + e["keywords"])


def sample_caption(e, rng):
    """Training caption: the name alone, the name with a few keywords, or a
    few keywords alone (so short prompts like "apple" work too)."""
    r = rng.random()
    kws = list(e["keywords"])
    if r < 0.45 or not kws:
        return e["name"]
    rng.shuffle(kws)
    if r < 0.85:
        return ", ".join([e["name"]] + kws[:rng.randint(1, min(3, len(kws)))])
    return ", ".join(kws[:rng.randint(1, min(2, len(kws)))])


def load(out):
    imgs = np.load(os.path.join(out, "emoji.npy"))
    entries = json.load(open(os.path.join(out, "emoji.json"), encoding="utf-8"))
    return imgs, entries


def augment(img, flip_allowed, rng, max_shift=3):
    """uint8 [64,64,3] -> shifted by up to max_shift px (white fill), mirrored
    with p=0.5 where the meaning allows."""
    dx, dy = rng.randint(-max_shift, max_shift), rng.randint(-max_shift, max_shift)
    out = np.full_like(img, 255)
    H, W = img.shape[:2]
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = img[ys, xs]
    if flip_allowed and rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def to_tensor(batch_u8):
    import torch
    x = torch.from_numpy(np.ascontiguousarray(batch_u8)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def grid(out, path=None, n=None, cols=40):
    from PIL import Image
    imgs, entries = load(out)
    if n:
        imgs = imgs[:n]
    rows = (len(imgs) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * SIZE, rows * SIZE), (255, 255, 255))
    for i, im in enumerate(imgs):
        sheet.paste(Image.fromarray(im), ((i % cols) * SIZE, (i // cols) * SIZE))
    sheet.save(path or os.path.join(out, "grid.png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["build", "grid"])
    ap.add_argument("--out", default=os.path.join(HERE, "work", "data"))
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.out)
    else:
        grid(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
