#!/usr/bin/python3
"""OpenAI CLIP's byte-level BPE tokenizer procedure, and a trainer that learns
a small vocabulary in the same format (vocab.json + merges.txt) from captions.

Encoding (OpenAI CLIP simple_tokenizer.py; golden README "tokenizer"):
clean-up (html.unescape twice, strip, collapse whitespace, lowercase; the ftfy
step is left out: ftfy is not in Debian and our captions are ASCII), split with
CLIP's regex, UTF-8 bytes -> byte-to-unicode table, '</w>' on the last symbol,
merge adjacent pairs by lowest merge rank, look up ids in vocab.json.

Vocabulary layout (as CLIP's): the 256 byte symbols, the same with '</w>', one
token per merge in merge order, then <|startoftext|> and <|endoftext|> (the
last two ids). merges.txt starts with a '#version: 0.2' line.

  tokenizer.py train --captions work/data/captions.txt --merges 2000 --out DIR
  tokenizer.py encode --vocab DIR "red apple"
"""
import argparse
import collections
import html
import json
import os
import re
import sys

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# CLIP's pattern uses \p{L} / \p{N} (the 'regex' module, not in Debian).
# With Python's re: letters = [^\W\d_], numbers = \d, and the "other" class
# [^\s\p{L}\p{N}] = non-space non-word characters plus '_'. Identical for ASCII.
_PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
                  re.IGNORECASE)


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clean(text):
    text = html.unescape(html.unescape(text)).strip()
    text = re.sub(r"\s+", " ", text).strip()
    return text.lower()


def pretokenize(text):
    b2u = bytes_to_unicode()
    out = []
    for piece in _PAT.findall(clean(text)):
        out.append("".join(b2u[b] for b in piece.encode("utf-8")))
    return out


def _word_symbols(piece):
    return tuple(piece[:-1]) + (piece[-1] + "</w>",)


class CLIPTokenizer:
    def __init__(self, folder):
        self.vocab = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
        lines = open(os.path.join(folder, "merges.txt"), encoding="utf-8").read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.bos = self.vocab[BOS]
        self.eos = self.vocab[EOS]
        self.cache = {}

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        word = list(_word_symbols(piece))
        while len(word) > 1:
            pairs = [(self.ranks.get((word[i], word[i + 1]), 1 << 30), i)
                     for i in range(len(word) - 1)]
            r, _ = min(pairs)
            if r == 1 << 30:
                break
            # merge every occurrence of the best pair, left to right (as CLIP)
            first, second = self._pair_of_rank(r)
            new = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        self.cache[piece] = word
        return word

    def _pair_of_rank(self, r):
        if not hasattr(self, "_by_rank"):
            self._by_rank = {v: k for k, v in self.ranks.items()}
        return self._by_rank[r]

    def tokens(self, text):
        out = []
        for piece in _PAT.findall(clean(text)):
            if piece == BOS or piece == EOS:
                out.append(piece)
                continue
            b2u = bytes_to_unicode()
            out.extend(self.bpe("".join(b2u[b] for b in piece.encode("utf-8"))))
        return out

    def encode(self, text):
        return [self.vocab[t] for t in self.tokens(text)]

    def encode77(self, text, length=77):
        ids = [self.bos] + self.encode(text)[:length - 2] + [self.eos]
        return ids + [self.eos] * (length - len(ids))


def train(captions, n_merges):
    """Classic BPE training (Sennrich et al. 2016) on CLIP's pre-tokenisation:
    repeatedly merge the most frequent adjacent symbol pair (ties broken by the
    pair itself, so the result is deterministic)."""
    words = collections.Counter()
    for c in captions:
        for piece in pretokenize(c):
            words[_word_symbols(piece)] += 1
    words = {w: n for w, n in words.items()}
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, n in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        nw = {}
        for w, n in words.items():
            out = []
            i = 0
            while i < len(w):
                if i < len(w) - 1 and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            t = tuple(out)
            nw[t] = nw.get(t, 0) + n
        words = nw
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base]
    seen = set(vocab)
    for a, b in merges:
        # a merge result can coincide with an existing token only if two
        # different pairs give the same string; CLIP's file has no such case
        # and neither may ours (vocab ids must be unique per merge)
        t = a + b
        if t in seen:
            raise RuntimeError("duplicate merge result %r" % t)
        seen.add(t)
        vocab.append(t)
    vocab += [BOS, EOS]
    return {t: i for i, t in enumerate(vocab)}, merges


def write(folder, vocab, merges):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--captions", required=True, help="text file, one caption per line")
    t.add_argument("--merges", type=int, default=3582,
                   help="4096-token vocabulary = 512 byte symbols + merges + 2 specials")
    t.add_argument("--out", required=True)
    e = sub.add_parser("encode")
    e.add_argument("--vocab", required=True)
    e.add_argument("text", nargs="+")
    args = ap.parse_args()
    if args.cmd == "train":
        caps = [l.strip() for l in open(args.captions, encoding="utf-8") if l.strip()]
        vocab, merges = train(caps, args.merges)
        write(args.out, vocab, merges)
        tk = CLIPTokenizer(args.out)
        # round trip: every caption must encode, and the longest must fit in 77
        longest = max(len(tk.encode(c)) for c in caps)
        print("tokenizer: %d merges, vocab %d, longest caption %d tokens" %
              (len(merges), len(vocab), longest))
    else:
        tk = CLIPTokenizer(args.vocab)
        for s in args.text:
            print(s, tk.tokens(s), tk.encode(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
