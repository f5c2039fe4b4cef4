"""Stable Diffusion 1.x networks in plain PyTorch, written for this project.

The module trees use the ORIGINAL single-file (LDM / CompVis) names, so that a
state dict exports directly to a single-file checkpoint:

  UNet        -> model.diffusion_model.<name>   (ldm openaimodel.UNetModel layout)
  AutoencoderKL -> first_stage_model.<name>     (ldm autoencoder Encoder/Decoder)
  CLIPText    -> cond_stage_model.transformer.<name> (Hugging Face CLIPTextModel names)

Numerics follow /work/shared/golden/README.md ("Architecture details that
matter for exact agreement"); verify_arch.py checks them against the golden
cases computed with diffusers / transformers.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------
# configurations (diffusers-style names, for the model card)

def unet_config(block_out_channels=(64, 128, 128), layers_per_block=2,
                attn_levels=None, heads=8, context_dim=128, in_channels=4,
                out_channels=4):
    n = len(block_out_channels)
    if attn_levels is None:  # SD 1.x: cross-attention on all but the last level
        attn_levels = [True] * (n - 1) + [False]
    return dict(block_out_channels=list(block_out_channels),
                layers_per_block=layers_per_block,
                attn_levels=list(attn_levels), heads=heads,
                context_dim=context_dim, in_channels=in_channels,
                out_channels=out_channels)


def vae_config(block_out_channels=(32, 64, 128, 128), layers_per_block=2,
               latent_channels=4):
    return dict(block_out_channels=list(block_out_channels),
                layers_per_block=layers_per_block,
                latent_channels=latent_channels)


def text_config(vocab_size=49408, hidden=32, layers=3, heads=4,
                intermediate=64, max_positions=77, act="quick_gelu"):
    return dict(vocab_size=vocab_size, hidden=hidden, layers=layers,
                heads=heads, intermediate=intermediate,
                max_positions=max_positions, act=act)


# ----------------------------------------------------------------------------
# UNet (ldm.modules.diffusionmodules.openaimodel.UNetModel naming)

def timestep_embedding(t, dim):
    """diffusers Timesteps(flip_sin_to_cos=True, freq_shift=0): [cos, sin]."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * k / half)
    arg = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, cin, eps=1e-5), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, cout, eps=1e-5), nn.SiLU(),
                                        nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = (nn.Conv2d(cin, cout, 1) if cin != cout
                                else nn.Identity())

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        ctx = x if context is None else context
        B, N, C = x.shape
        h = self.heads
        d = C // h
        q = self.to_q(x).view(B, N, h, d).transpose(1, 2)
        k = self.to_k(ctx).view(B, ctx.shape[1], h, d).transpose(1, 2)
        v = self.to_v(ctx).view(B, ctx.shape[1], h, d).transpose(1, 2)
        w = torch.softmax((q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d)), dim=-1)
        o = (w @ v).transpose(1, 2).reshape(B, N, C)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0),
                                 nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        x = x + self.ff(self.norm3(x))
        return x


class SpatialTransformer(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, context_dim, heads)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x))
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, C)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        h = h.reshape(B, H, W, C).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimestepEmbedSequential(nn.ModuleList):
    def forward(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """SD 1.x UNet2DConditionModel, LDM naming (input_blocks / middle_block /
    output_blocks). Down level i: layers_per_block x (ResBlock [+ transformer])
    then a downsampler except on the last level; up levels have one more
    ResBlock and an upsampler except on the last."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        chs = cfg["block_out_channels"]
        lpb = cfg["layers_per_block"]
        attn = cfg["attn_levels"]
        heads = cfg["heads"]
        cdim = cfg["context_dim"]
        c0 = chs[0]
        self.c0 = c0
        emb_dim = 4 * c0
        self.time_embed = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(
            [nn.Conv2d(cfg["in_channels"], c0, 3, padding=1)])])
        skip_chs = [c0]
        ch = c0
        n = len(chs)
        for lvl, cout in enumerate(chs):
            for _ in range(lpb):
                layers = [ResBlock(ch, cout, emb_dim)]
                ch = cout
                if attn[lvl]:
                    layers.append(SpatialTransformer(ch, cdim, heads))
                self.input_blocks.append(TimestepEmbedSequential(layers))
                skip_chs.append(ch)
            if lvl != n - 1:
                self.input_blocks.append(TimestepEmbedSequential([Downsample(ch)]))
                skip_chs.append(ch)
        self.middle_block = TimestepEmbedSequential([
            ResBlock(ch, ch, emb_dim), SpatialTransformer(ch, cdim, heads),
            ResBlock(ch, ch, emb_dim)])
        self.output_blocks = nn.ModuleList()
        for lvl in reversed(range(n)):
            cout = chs[lvl]
            for i in range(lpb + 1):
                sk = skip_chs.pop()
                layers = [ResBlock(ch + sk, cout, emb_dim)]
                ch = cout
                if attn[lvl]:
                    layers.append(SpatialTransformer(ch, cdim, heads))
                if lvl != 0 and i == lpb:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch, eps=1e-5), nn.SiLU(),
                                 nn.Conv2d(ch, cfg["out_channels"], 3, padding=1))

    def forward(self, x, t, context):
        if t.dim() == 0:
            t = t[None]
        if t.shape[0] != x.shape[0]:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.c0))
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for blk in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = blk(h, emb, context)
        return self.out(h)


# ----------------------------------------------------------------------------
# AutoencoderKL (ldm.modules.diffusionmodules.model Encoder/Decoder naming)

class VResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class VAttnBlock(nn.Module):
    """Single-head self-attention over H*W tokens; q/k/v/proj_out are 1x1 convs
    (stored [C, C, 1, 1] as in original checkpoints)."""

    def __init__(self, c):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(B, C, H * W).transpose(1, 2)
        k = self.k(h).reshape(B, C, H * W)
        v = self.v(h).reshape(B, C, H * W).transpose(1, 2)
        w = torch.softmax((q @ k) * (1.0 / math.sqrt(C)), dim=-1)
        o = (w @ v).transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(o)


class VDownsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VUpsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    pass


class _Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = VResnetBlock(c, c)
        self.attn_1 = VAttnBlock(c)
        self.block_2 = VResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, chs, lpb, zc):
        super().__init__()
        self.conv_in = nn.Conv2d(3, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = chs[0]
        for i, cout in enumerate(chs):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            for _ in range(lpb):
                lvl.block.append(VResnetBlock(cin, cout))
                cin = cout
            if i != len(chs) - 1:
                lvl.downsample = VDownsample(cin)
            self.down.append(lvl)
        self.mid = _Mid(cin)
        self.norm_out = nn.GroupNorm(32, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 2 * zc, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, chs, lpb, zc):
        super().__init__()
        cin = chs[-1]
        self.conv_in = nn.Conv2d(zc, cin, 3, padding=1)
        self.mid = _Mid(cin)
        ups = [None] * len(chs)
        for i in reversed(range(len(chs))):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            for _ in range(lpb + 1):
                lvl.block.append(VResnetBlock(cin, chs[i]))
                cin = chs[i]
            if i != 0:
                lvl.upsample = VUpsample(cin)
            ups[i] = lvl
        self.up = nn.ModuleList(ups)  # up.0 is the LAST (full-resolution) level
        self.norm_out = nn.GroupNorm(32, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    scaling_factor = 0.18215

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        chs, lpb, zc = cfg["block_out_channels"], cfg["layers_per_block"], cfg["latent_channels"]
        self.encoder = Encoder(chs, lpb, zc)
        self.decoder = Decoder(chs, lpb, zc)
        self.quant_conv = nn.Conv2d(2 * zc, 2 * zc, 1)
        self.post_quant_conv = nn.Conv2d(zc, zc, 1)

    def encode(self, x):
        """-> (mean, logvar) of the posterior; logvar clamped to [-30, 20]."""
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        """z is the UNSCALED latent (= scaled latent / scaling_factor)."""
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------------------
# CLIP text encoder (transformers CLIPTextModel naming, under "text_model.")

class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mask):
        B, N, C = x.shape
        h = self.heads
        dh = C // h
        q = self.q_proj(x).view(B, N, h, dh).transpose(1, 2)
        k = self.k_proj(x).view(B, N, h, dh).transpose(1, 2)
        v = self.v_proj(x).view(B, N, h, dh).transpose(1, 2)
        s = (q * (dh ** -0.5)) @ k.transpose(-1, -2) + mask
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, d, inter, act):
        super().__init__()
        self.fc1 = nn.Linear(d, inter)
        self.fc2 = nn.Linear(inter, d)
        self.act = act

    def forward(self, x):
        h = self.fc1(x)
        if self.act == "quick_gelu":
            h = h * torch.sigmoid(1.702 * h)
        else:
            h = F.gelu(h)
        return self.fc2(h)


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, inter, act):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = CLIPMLP(d, inter, act)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Embeddings(nn.Module):
    def __init__(self, vocab, d, npos):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(npos, d)
        self.register_buffer("position_ids", torch.arange(npos, dtype=torch.int64)[None, :])


class _Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([CLIPLayer(cfg["hidden"], cfg["heads"], cfg["intermediate"], cfg["act"])
                                     for _ in range(cfg["layers"])])


class _TextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = _Embeddings(cfg["vocab_size"], cfg["hidden"], cfg["max_positions"])
        self.encoder = _Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden"], eps=1e-5)


class CLIPText(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.text_model = _TextModel(cfg)

    def forward(self, ids, output_hidden_states=False):
        tm = self.text_model
        N = ids.shape[1]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(
            tm.embeddings.position_ids[:, :N])
        mask = torch.full((N, N), float("-inf"), device=ids.device).triu(1)
        hidden = [x]
        for layer in tm.encoder.layers:
            x = layer(x, mask)
            hidden.append(x)
        last = tm.final_layer_norm(x)
        if output_hidden_states:
            return last, hidden
        return last


# ----------------------------------------------------------------------------
# single-file naming

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."


def _strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def load_single_file_into(sd, unet=None, vae=None, text=None):
    """Load a single-file state dict (numpy or torch tensors) into the modules;
    every model tensor must be used and every module tensor present."""
    for mod, prefix in ((unet, UNET_PREFIX), (vae, VAE_PREFIX), (text, TEXT_PREFIX)):
        if mod is None:
            continue
        part = {k: torch.as_tensor(v) for k, v in _strip(sd, prefix).items()}
        own = mod.state_dict()
        missing = sorted(set(own) - set(part))
        extra = sorted(set(part) - set(own))
        if missing or extra:
            raise KeyError("%s: missing %s, unexpected %s" % (prefix, missing[:8], extra[:8]))
        for k, v in part.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError("%s%s: shape %s vs %s" % (prefix, k, tuple(v.shape), tuple(own[k].shape)))
            own[k].copy_(v.to(own[k].dtype))


def to_single_file(unet, vae, text):
    sd = {}
    for mod, prefix in ((unet, UNET_PREFIX), (vae, VAE_PREFIX), (text, TEXT_PREFIX)):
        for k, v in mod.state_dict().items():
            sd[prefix + k] = v.detach().cpu()
    return sd


def count_params(mod):
    return sum(p.numel() for p in mod.parameters())
