"""The DiT backbone of SEDD (Lou et al. 2024) and its RADD variant (Ou et al. 2025).

One implementation, two kinds (conventions.md section 3):

- ``kind='sedd'``: conditioned on the total noise sigma_bar through ``sigma_map`` (a
  sinusoidal embedding of size 256, Linear(256, cond_dim), SiLU, Linear(cond_dim,
  cond_dim), then one more SiLU) and adaLN modulation in every block (6 chunks: shift,
  scale and gate for attention and for the MLP) and in the final layer (shift, scale).
  LayerNorms carry a weight only. The network returns the log concrete score
  ``[B, L, dim]`` (dim = V + 1 on the absorbing graph, V on the uniform graph): with
  ``scale_by_sigma`` (absorbing only) it subtracts ``log(expm1(sigma_bar)) + log(dim - 1)``
  and in every case it sets the current token's entry to log 1 = 0. It is a score model
  of the harness as it stands (``model(x_t, sigma_bar)``).
- ``kind='radd'``: no time conditioning at all (no ``sigma_map``, no adaLN), LayerNorms with
  weight and bias. The output layer keeps V + 1 rows (the hub checkpoints have them) but
  only the V real tokens are used: the network returns ``log p(x0 | x_t)`` ``[B, L, V]`` via
  log_softmax over them. Wrap it with ``as_score_model`` (``lsd.DenoiserScore``) to sample.

Common to both: token embedding table ``vocab_embed.embedding`` (V + 1 rows with a mask),
no positional table, rotary embeddings on queries and keys (base 1e4, rotate-half, the
``rotary_emb.inv_freq`` buffer is part of the state dict), attention through
``torch.nn.functional.scaled_dot_product_attention`` (non-causal), MLP 4x with tanh-GELU,
pre-norm residual blocks. Parameter names follow the SEDD/RADD code so the hub state
dicts load strictly (``tests/data/sedd-small.keys.tsv`` lists SEDD-small's names and shapes).

Precision choices (documented differences from the reference code, all towards fp32):
LayerNorm runs in float32 (as upstream), rotary embeddings are applied in float32 and cast
back, and the output post-processing (scale_by_sigma, scatter, log_softmax) runs in
float32 on the float32-cast logits (upstream does it in bf16 under autocast). Optional
bf16 autocast (``DiT(config, autocast=True)``) covers the blocks and the output layer, on
CUDA only; outputs are always float32.

Offset constant: upstream subtracts ``np.log(x.shape[-1] - 1)`` where ``x.shape[-1]`` is the
number of classes V + 1, i.e. ``log V`` for V real tokens (written ``log(V - 1)`` where V means
the class count); this module follows the code: ``log(dim - 1)`` (docs/conventions.md section 3).
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..diffusion.registry import make_graph
from ..diffusion.noise import make_noise
from ..diffusion.scores import DenoiserScore

KINDS = ("sedd", "radd")
GRAPHS = ("absorbing", "uniform")
FREQ_EMBED_SIZE = 256
SIZES = {"small": (768, 12, 12), "medium": (1024, 16, 24)}  # hidden, heads, blocks
DEFAULT_LOGLINEAR_EPS = 1e-3


@dataclass
class DiTConfig:
    """Architecture and diffusion of one DiT backbone.

    tokens: V, the number of real tokens (GPT-2: 50257); the embedding table has V + 1 rows
        (the mask id is V) and so does the output layer on the absorbing graph.
    kind: 'sedd' (sigma-conditioned score network) or 'radd' (time-free x0 predictor).
    graph: 'absorbing' or 'uniform' (RADD: absorbing only).
    noise: a `lsd.make_noise` dict, e.g. {"type": "loglinear", "eps": 1e-3}.
    scale_by_sigma: SEDD's absorbing output offset (ignored by RADD).
    dropout: residual dropout, used only in training mode.
    conv_kernel: optional local mixing (off at 0, the SEDD/RADD layout): an odd kernel size k
        adds a depthwise 1D convolution (zero padding, ``blocks.i.conv.{weight,bias}``) in
        every block, applied to the attention branch's input and added to its output. Written
        to config.json (``model.conv_kernel``) only when on.
    pos_embed: optional learned absolute position table ``pos_embed`` [length, hidden] added
        to the token embeddings (off by default: SEDD/RADD use rotary only; inputs may then
        be at most `length` long). Written to config.json (``model.pos_embed``) only when on.
    rotary_values: optional (off by default): rotate the attention values by their position too
        and rotate each output back by the query's position, so that what a head reads carries
        the relative offset of where it read it (no parameters). Written to config.json
        (``model.rotary_values``) only when on.
    extra: the rest of a hub config.json (training, data, ...) kept for a faithful round trip
        (`lsd.backbones.hub_config`).
    """

    tokens: int = 50257
    hidden_size: int = 768
    n_heads: int = 12
    n_blocks: int = 12
    cond_dim: int = 128
    length: int = 1024
    kind: str = "sedd"
    graph: str = "absorbing"
    noise: dict = field(default_factory=lambda: {"type": "loglinear", "eps": DEFAULT_LOGLINEAR_EPS})
    scale_by_sigma: bool = True
    dropout: float = 0.1
    mlp_ratio: int = 4
    rotary_base: float = 10000.0
    conv_kernel: int = 0
    pos_embed: bool = False
    rotary_values: bool = False
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for name in ("tokens", "hidden_size", "n_heads", "n_blocks", "cond_dim", "length", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DiTConfig.{name}: must be a positive integer, got {value!r}")
        if self.tokens < 2:
            raise ValueError(f"DiTConfig.tokens: need at least 2 real tokens, got {self.tokens}")
        if self.kind not in KINDS:
            raise ValueError(f"DiTConfig.kind: unknown {self.kind!r}; choose one of {list(KINDS)}")
        if self.graph not in GRAPHS:
            raise ValueError(f"DiTConfig.graph: unknown {self.graph!r}; choose one of {sorted(GRAPHS)}")
        if self.hidden_size % self.n_heads:
            raise ValueError(f"DiTConfig: hidden_size {self.hidden_size} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"DiTConfig: head dim {self.head_dim} must be even for rotary embeddings")
        if self.kind == "radd" and self.graph != "absorbing":
            raise ValueError("DiTConfig: kind 'radd' predicts x0 on the absorbing graph only")
        if self.kind == "sedd" and self.scale_by_sigma and self.graph != "absorbing":
            raise ValueError("DiTConfig.scale_by_sigma: defined for the absorbing graph only (set it to false)")
        if isinstance(self.conv_kernel, bool) or not isinstance(self.conv_kernel, int) or self.conv_kernel < 0 \
                or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(f"DiTConfig.conv_kernel: must be 0 (off) or an odd positive integer, got {self.conv_kernel!r}")
        for name in ("pos_embed", "rotary_values"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DiTConfig.{name}: must be true or false, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"DiTConfig.dropout: must lie in [0, 1), got {self.dropout}")
        self.noise = dict(self.noise)
        self.make_noise()  # validates the noise dict

    # derived -----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def num_classes(self) -> int:
        """Rows of the embedding and of the output layer: V + 1 with a mask (absorbing), else V."""
        return self.tokens + (1 if self.graph == "absorbing" else 0)

    @property
    def output_dim(self) -> int:
        """Last dim of the network output: the score dim (SEDD) or V real tokens (RADD)."""
        return self.tokens if self.kind == "radd" else self.num_classes

    def make_graph(self):
        return make_graph({"type": self.graph, "num_tokens": self.tokens})

    def make_noise(self):
        return make_noise(self.noise)

    # presets -----------------------------------------------------------------------
    @classmethod
    def sedd(cls, size: str = "small", **overrides) -> "DiTConfig":
        """SEDD-small (hidden 768, 12 heads, 12 blocks) or SEDD-medium (1024, 16, 24), absorbing, GPT-2 V."""
        hidden, heads, blocks = _size(size)
        return cls(**{"hidden_size": hidden, "n_heads": heads, "n_blocks": blocks, "kind": "sedd", **overrides})

    @classmethod
    def radd(cls, size: str = "small", **overrides) -> "DiTConfig":
        """The RADD transformer of the same sizes (no time conditioning), absorbing, GPT-2 V."""
        hidden, heads, blocks = _size(size)
        overrides.setdefault("dropout", 0.02)  # RADD's small config
        return cls(**{"hidden_size": hidden, "n_heads": heads, "n_blocks": blocks, "kind": "radd",
                      "scale_by_sigma": False, **overrides})

    def to_dict(self) -> dict:
        """Plain fields (no `extra`), e.g. for provenance records."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}


def _size(size: str):
    if size not in SIZES:
        raise ValueError(f"DiTConfig: unknown size {size!r}; choose one of {sorted(SIZES)}")
    return SIZES[size]


# layers ----------------------------------------------------------------------------------

class LayerNorm(nn.Module):
    """LayerNorm in float32 (eps 1e-5) with a weight, and a bias for RADD."""

    def __init__(self, dim: int, bias: bool = False):
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        with _no_autocast(x.device):
            y = F.layer_norm(x.float(), [self.dim]) * self.weight.float()
            if self.bias is not None:
                y = y + self.bias.float()
        return y.to(x.dtype)  # float32 residual stream (also under autocast), or the model's dtype


def _no_autocast(device):
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """sigma_bar -> [cos, sin] of 256 frequencies (max period 1e4) -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, frequency_size: int = FREQ_EMBED_SIZE):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, dim), nn.SiLU(), nn.Linear(dim, dim))

    @staticmethod
    def sinusoid(t, size: int, max_period: float = 10000.0):
        half = size // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if size % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t):
        weight = self.mlp[0].weight
        return self.mlp(self.sinusoid(t, self.frequency_size).to(weight.dtype))


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half) over the head dim; `inv_freq` is a saved buffer."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        self.register_buffer("inv_freq", self.canonical_inv_freq())

    def canonical_inv_freq(self, device=None):
        return 1.0 / (self.base ** (torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim))

    def forward(self, seq_len: int, device):
        inv = self.inv_freq
        if inv.dtype != torch.float32:  # cast along with a low-precision model: recompute exactly
            inv = self.canonical_inv_freq(device)
        pos = torch.arange(seq_len, device=device, dtype=torch.float32)
        angles = torch.outer(pos, inv.to(device))
        angles = torch.cat([angles, angles], dim=-1)  # [L, head_dim]
        return angles.cos(), angles.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x, cos, sin):
    """x [B, L, H, D]; cos/sin [L, D]. Computed in float32, returned in x's dtype."""
    xf = x.float()
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)


class DiTBlock(nn.Module):
    """Pre-norm transformer block; with `cond_dim` it is SEDD's adaLN block, without it RADD's."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int | None, mlp_ratio: int = 4, dropout: float = 0.0,
                 conv_kernel: int = 0, rotary_values: bool = False):
        super().__init__()
        self.rotary_values = rotary_values
        self.n_heads = n_heads
        self.dropout = dropout
        conditioned = cond_dim is not None
        self.norm1 = LayerNorm(dim, bias=not conditioned)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        # Optional depthwise convolution over positions (DiTConfig.conv_kernel), beside attention.
        self.conv = nn.Conv1d(dim, dim, conv_kernel, padding=conv_kernel // 2, groups=dim) if conv_kernel else None
        self.norm2 = LayerNorm(dim, bias=not conditioned)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        if conditioned:
            self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)
        else:
            self.adaLN_modulation = None

    def attention(self, h, cos, sin):
        b, l, d = h.shape
        qkv = self.attn_qkv(h).view(b, l, 3, self.n_heads, d // self.n_heads)
        q = apply_rotary(qkv[:, :, 0], cos, sin)
        k = apply_rotary(qkv[:, :, 1], cos, sin)
        v = qkv[:, :, 2]
        if self.rotary_values:
            v = apply_rotary(v, cos, sin)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        if self.rotary_values:  # back by the query's position: a read at offset k - j is rotated by k - j
            out = apply_rotary(out, cos, -sin)
        out = self.attn_out(out.reshape(b, l, d))
        if self.conv is not None:
            out = out + self.conv(h.transpose(1, 2)).transpose(1, 2)
        return out

    def forward(self, x, cos, sin, c=None):
        drop = self.dropout if self.training else 0.0
        if self.adaLN_modulation is None:
            x = x + F.dropout(self.attention(self.norm1(x), cos, sin), drop, self.training)
            return x + F.dropout(self.mlp(self.norm2(x)), drop, self.training)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        attn = self.attention(modulate(self.norm1(x), shift1, scale1), cos, sin)
        x = x + gate1 * F.dropout(attn, drop, self.training)
        mlp = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2 * F.dropout(mlp, drop, self.training)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int, cond_dim: int | None):
        super().__init__()
        conditioned = cond_dim is not None
        self.norm_final = LayerNorm(dim, bias=not conditioned)
        self.linear = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        if conditioned:
            self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)
        else:
            self.adaLN_modulation = None

    def forward(self, x, c=None):
        h = self.norm_final(x)
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
            h = modulate(h, shift, scale)
        return self.linear(h)


class EmbeddingLayer(nn.Module):
    """A bare embedding table named `embedding` (SEDD's parameter name), Kaiming-uniform init."""

    def __init__(self, dim: int, num: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(num, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, x):
        return F.embedding(x, self.embedding)


class DiT(nn.Module):
    """The SEDD / RADD transformer. ``forward(x_t [B, L] long, sigma_bar [B]) -> float32``.

    SEDD: the log concrete score ``[B, L, dim]`` (current token's entry exactly 0): a score
    model as is. RADD: ``log p(x0 | x_t)`` over the V real tokens ``[B, L, V]``; sigma_bar is
    accepted and ignored, so ``lsd.DenoiserScore(net, graph)`` (see `as_score_model`) turns
    it into a score model. ``autocast=True`` runs the blocks in bf16 autocast on CUDA.
    Inputs may be shorter or longer than ``config.length`` (rotary positions extrapolate;
    the checkpoints were trained at 1024).
    """

    def __init__(self, config: DiTConfig, autocast: bool = False):
        super().__init__()
        self.config = config
        self.autocast = bool(autocast)
        cond = config.cond_dim if config.kind == "sedd" else None
        self.vocab_embed = EmbeddingLayer(config.hidden_size, config.num_classes)
        if cond is not None:
            self.sigma_map = TimestepEmbedder(cond)
        self.rotary_emb = Rotary(config.head_dim, config.rotary_base)
        self.blocks = nn.ModuleList([DiTBlock(config.hidden_size, config.n_heads, cond, config.mlp_ratio,
                                              config.dropout, config.conv_kernel, config.rotary_values)
                                     for _ in range(config.n_blocks)])
        if config.pos_embed:
            self.pos_embed = nn.Parameter(torch.empty(config.length, config.hidden_size))
            nn.init.normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None
        self.output_layer = FinalLayer(config.hidden_size, config.num_classes, cond)

    @property
    def kind(self) -> str:
        return self.config.kind

    def forward(self, x_t: torch.Tensor, sigma_bar: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x_t.dim() != 2:
            raise ValueError(f"DiT: x_t must be [B, L] token ids, got shape {tuple(x_t.shape)}")
        c = None
        if cfg.kind == "sedd":
            if sigma_bar is None:
                raise ValueError("DiT(kind='sedd'): sigma_bar [B] is required")
            sigma_bar = sigma_bar.reshape(-1)
            if sigma_bar.shape[0] != x_t.shape[0]:
                raise ValueError(f"DiT: sigma_bar has {sigma_bar.shape[0]} entries for a batch of {x_t.shape[0]}")
            c = F.silu(self.sigma_map(sigma_bar.to(self.sigma_map.mlp[0].weight.dtype)))
        x = self.vocab_embed(x_t)
        if self.pos_embed is not None:
            if x_t.shape[1] > cfg.length:
                raise ValueError(f"DiT(pos_embed): inputs of {x_t.shape[1]} tokens exceed the position table ({cfg.length})")
            x = x + self.pos_embed[: x_t.shape[1]]
        cos, sin = self.rotary_emb(x_t.shape[1], x_t.device)
        use_autocast = self.autocast and x_t.device.type == "cuda"
        context = torch.autocast("cuda", dtype=torch.bfloat16) if use_autocast else contextlib.nullcontext()
        with context:
            for block in self.blocks:
                x = block(x, cos, sin, c)
            logits = self.output_layer(x, c)
        logits = logits.float()
        if cfg.kind == "radd":
            return torch.log_softmax(logits[..., : cfg.tokens], dim=-1)
        if cfg.scale_by_sigma:
            offset = torch.log(torch.expm1(sigma_bar.to(torch.float64))) + math.log(logits.shape[-1] - 1)
            logits = logits - offset.to(torch.float32)[:, None, None]
        return logits.scatter(-1, x_t[..., None], 0.0)


def as_score_model(net: DiT, cache: bool = True):
    """The score model of a DiT: the network itself (SEDD) or `lsd.DenoiserScore` over it (RADD)."""
    if net.config.kind == "radd":
        return DenoiserScore(net, net.config.make_graph(), cache=cache)
    return net


def build_dit(config: DiTConfig, device=None, dtype=None, autocast: bool = False) -> DiT:
    """A freshly initialised DiT from a config; device may be 'meta'. (A hub config.json dict
    becomes a `DiTConfig` through `lsd.backbones.hub_config.from_hub_config`.)"""
    if not isinstance(config, DiTConfig):
        raise TypeError(f"build_dit: expected a DiTConfig, got {type(config).__name__} (a hub config.json dict "
                        f"goes through lsd.backbones.hub_config.from_hub_config)")
    with torch.device(device if device is not None else "cpu"):
        net = DiT(config, autocast=autocast)
    if dtype is not None:
        net = net.to(dtype=dtype)
    return net
