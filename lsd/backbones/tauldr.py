"""tauLDR's image UNet (Campbell et al. 2022), the LSD paper's CIFAR-10 backbone.

The network (conventions.md section 8; parameter names follow tauLDR's `lib/networks/networks.py`
UNet inside `lib/models/models.py` `ImageX0PredBase`, attribute `net`, so the released state
dict loads strictly once DDP's `.module.` is removed):
- inputs: the integer values x_t [B, C*H*W] viewed as [B, C, H, W], scaled to [-1, 1] by
  `data_min_max`; the time t in [0, 1] enters as a sinusoidal embedding of `time_scale_factor`
  * t (1000 t, dimension `time_embed_dim` = 128, sin half then cos half, max period 10000) through
  Linear(128, 512), SiLU, Linear(512, 512) (`temb_modules`);
- `input_conv` 3x3 to `ch` channels; per scale s (channel multipliers `ch_mult`) `num_res_blocks`
  ResBlocks (GroupNorm(min(C // 4, 32), eps 1e-6), SiLU, 3x3 conv, + Linear(SiLU(temb)), GroupNorm,
  SiLU, dropout, 3x3 conv; a 1x1 `nin` when the width changes; (x + h) / sqrt(2)), each followed
  by a single-head self-attention block (`AttnBlock`: GroupNorm, 1x1 q/k/v/out as `NiN` weights
  [in, out]) at scale `attn_scale` (1: 16x16 for CIFAR-10), and a stride-2 3x3 conv (padding
  (0, 1, 0, 1)) between scales; middle ResBlock, AttnBlock, ResBlock; the mirror path with
  `num_res_blocks + 1` ResBlocks per scale on the concatenated skips, nearest-neighbour
  upsampling + 3x3 conv between scales; GroupNorm, SiLU, 3x3 conv to 2C channels;
- output per channel: mean mu = tanh(x_centred + h[:, :C]) (a residual on the input) and
  log-scale h[:, C:] of a logistic over S bins of width 2/S on [-1, 1]: logit_v =
  log(sigmoid(r_v) - sigmoid(l_v)) with l_v, r_v the bin edges minus mu times exp(2 - log_scale),
  computed as tauLDR does (log-sigmoids and log1p(-exp(b - a) + 1e-6); `fix_logistic` also takes
  the minimum with the mirrored form). `forward` returns log p(x0 | x_t) = log_softmax of those
  logits, float32 [B, C*H*W, S] (tauLDR applies a softmax to them).
CIFAR-10 (`TauLDRConfig.cifar10()`): ch 128, ch_mult (1, 2, 2, 2), 2 res blocks, dropout 0.1,
S = 256: 328 tensors, 35,749,766 parameters. The network is conditioned on t, the harness's
score models on sigma_bar: the network converts with its noise's `time` (`ExponentialNoise`).
`lsd.X0Score` turns it into a score model on the Gaussian-rate graph (`as_score_model`).

Loading the released checkpoint and saving small trained networks: `lsd.backbones.tauldr_io`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..diffusion.registry import make_graph
from ..diffusion.noise import make_noise
from ..diffusion.scores import X0Score

MODEL_TYPE = "tauldr_unet"
CIFAR10_GRAPH = {"type": "gaussian", "num_tokens": 256, "rate_sigma": 6.0, "q_sigma": 512.0}
CIFAR10_NOISE = {"type": "exponential", "time_base": 3.0, "time_exponential": 100.0}
LOGISTIC_EPS = 1e-6  # tauLDR's eps inside log(exp(a) - exp(b)) = a + log1p(-exp(b - a) + eps)


@dataclass
class TauLDRConfig:
    """Architecture, image shape, levels and diffusion of one tauLDR UNet (defaults: CIFAR-10).

    ch, ch_mult, num_res_blocks, attn_scale (tauLDR's `scale_count_to_put_attn`), dropout,
    skip_rescale, time_embed_dim, time_scale_factor, fix_logistic: tauLDR's `model` config.
    channels, image_size: the data shape [C, H, W] with H = W = image_size; levels = S values
    per channel (data_min_max = (0, S - 1) as tauLDR's [0, 255]). graph / noise: `make_graph`
    / `make_noise` dicts (the noise must have `time`, the inverse of its total)."""

    ch: int = 128
    ch_mult: tuple = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_scale: int = 1
    dropout: float = 0.1
    skip_rescale: bool = True
    time_embed_dim: int = 128
    time_scale_factor: float = 1000.0
    fix_logistic: bool = False
    channels: int = 3
    image_size: int = 32
    levels: int = 256
    graph: dict = field(default_factory=lambda: dict(CIFAR10_GRAPH))
    noise: dict = field(default_factory=lambda: dict(CIFAR10_NOISE))

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        for name in ("ch", "num_res_blocks", "time_embed_dim", "channels", "image_size", "levels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TauLDRConfig.{name}: must be a positive integer, got {value!r}")
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"TauLDRConfig.ch_mult: need positive multipliers, got {self.ch_mult}")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(f"TauLDRConfig: image_size {self.image_size} is not divisible by "
                             f"2^{len(self.ch_mult) - 1} (one halving between scales)")
        if min(self.ch * m for m in self.ch_mult) < 4:
            raise ValueError("TauLDRConfig: every width must be >= 4 (GroupNorm of C // 4 groups)")
        if self.time_embed_dim % 2 or self.time_embed_dim < 4:
            raise ValueError(f"TauLDRConfig.time_embed_dim: need an even number >= 4, got {self.time_embed_dim}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"TauLDRConfig.dropout: must lie in [0, 1), got {self.dropout}")
        self.graph, self.noise = dict(self.graph), dict(self.noise)
        graph = self.make_graph()
        if graph.num_tokens != self.levels:
            raise ValueError(f"TauLDRConfig: graph has {graph.num_tokens} values, the network {self.levels} levels")
        if not hasattr(self.make_noise(), "time"):
            raise ValueError(f"TauLDRConfig.noise: {self.noise.get('type')!r} has no `time` (inverse of its total); "
                             f"the network is conditioned on t")

    @property
    def length(self) -> int:
        return self.channels * self.image_size ** 2

    def make_graph(self):
        return make_graph(self.graph)

    def make_noise(self):
        return make_noise(self.noise)

    @classmethod
    def cifar10(cls, **overrides) -> "TauLDRConfig":
        """tauLDR's CIFAR-10 model (config/train/cifar10.py)."""
        return cls(**overrides)

    def to_dict(self) -> dict:
        """config.json layout: {"model": {"type": "tauldr_unet", ...}, "graph": ..., "noise": ...}."""
        model = {k: v for k, v in asdict(self).items() if k not in ("graph", "noise")}
        model["ch_mult"] = list(self.ch_mult)
        return {"model": {"type": MODEL_TYPE, **model}, "graph": dict(self.graph), "noise": dict(self.noise)}

    @classmethod
    def from_dict(cls, config: dict) -> "TauLDRConfig":
        model = dict((config or {}).get("model") or {})
        if model.pop("type", None) != MODEL_TYPE:
            raise ValueError(f"tauLDR config: model.type must be {MODEL_TYPE!r}")
        try:
            return cls(**model, graph=config["graph"], noise=config["noise"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"tauLDR config: {err}") from None


# layers -------------------------------------------------------------------------------------

def _variance_scaling(shape, scale: float, fan_in: int, fan_out: int) -> torch.Tensor:
    """Uniform fan-average variance scaling (DDPM's default_init, as tauLDR initialises NiN)."""
    scale = 1e-10 if scale == 0 else scale
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    return (torch.rand(*shape) * 2.0 - 1.0) * bound


def _groups(channels: int) -> int:
    """tauLDR's GroupNorm group count min(C // 4, 32); C must be a multiple of it."""
    groups = min(channels // 4, 32)
    if channels % groups:
        raise ValueError(f"TauLDRConfig: a width of {channels} channels (a skip concatenation included) is not "
                         f"divisible by its {groups} GroupNorm groups; choose ch and ch_mult accordingly")
    return groups


class NiN(nn.Module):
    """A 1x1 layer with tauLDR's parameter layout: W [in, out], b [out]."""

    def __init__(self, in_ch: int, out_ch: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(_variance_scaling((in_ch, out_ch), init_scale, in_ch, out_ch))
        self.b = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x):  # [B, C, H, W]
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[:, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual with skip rescale."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.NIN_0 = NiN(channels, channels)
        self.NIN_1 = NiN(channels, channels)
        self.NIN_2 = NiN(channels, channels)
        self.NIN_3 = NiN(channels, channels, init_scale=0.0)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = (layer(h).reshape(B, C, H * W).transpose(1, 2) for layer in (self.NIN_0, self.NIN_1, self.NIN_2))
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # scale C^-1/2
        h = self.NIN_3(h.transpose(1, 2).reshape(B, C, H, W))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float, skip_rescale: bool = True):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.groupnorm0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.dense0 = nn.Linear(temb_dim, out_ch)
        nn.init.zeros_(self.dense0.bias)
        self.groupnorm1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=1e-6)
        self.dropout0 = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.nin = NiN(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x, temb):
        h = self.conv0(F.silu(self.groupnorm0(x)))
        h = h + self.dense0(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout0(F.silu(self.groupnorm1(h))))
        if self.nin is not None:
            x = self.nin(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x, temb=None):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, temb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: float = 10000.0) -> torch.Tensor:
    """[sin(t w_k), cos(t w_k)] with w_k = max_positions^(-k / (dim/2 - 1)), k < dim/2 (float32)."""
    half = dim // 2
    step = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -step)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class UNet(nn.Module):
    """The UNet body: (x in [-1, 1] [B, C, H, W], t [B]) -> [B, 2C, H, W] (mean channels already
    passed through tanh(x + h)). Module lists in tauLDR's order, so the state-dict keys match."""

    def __init__(self, cfg: TauLDRConfig):
        super().__init__()
        self.cfg = cfg
        ch, temb = cfg.ch, 4 * cfg.time_embed_dim
        self.temb_modules = nn.ModuleList([nn.Linear(cfg.time_embed_dim, temb), nn.Linear(temb, temb)])
        for layer in self.temb_modules:
            nn.init.zeros_(layer.bias)
        self.input_conv = nn.Conv2d(cfg.channels, ch, 3, padding=1)
        widths, width = [ch], ch
        down = []
        for scale, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                down.append(ResBlock(width, ch * mult, temb, cfg.dropout, cfg.skip_rescale))
                width = ch * mult
                if scale == cfg.attn_scale:
                    down.append(AttnBlock(width, cfg.skip_rescale))
                widths.append(width)
            if scale != len(cfg.ch_mult) - 1:
                down.append(Downsample(width))
                widths.append(width)
        self.downsampling_modules = nn.ModuleList(down)
        self.middle_modules = nn.ModuleList([ResBlock(width, width, temb, cfg.dropout, cfg.skip_rescale),
                                             AttnBlock(width, cfg.skip_rescale),
                                             ResBlock(width, width, temb, cfg.dropout, cfg.skip_rescale)])
        up = []
        for scale in reversed(range(len(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                up.append(ResBlock(width + widths.pop(), ch * cfg.ch_mult[scale], temb, cfg.dropout, cfg.skip_rescale))
                width = ch * cfg.ch_mult[scale]
                if scale == cfg.attn_scale:
                    up.append(AttnBlock(width, cfg.skip_rescale))
            if scale != 0:
                up.append(Upsample(width))
        self.upsampling_modules = nn.ModuleList(up)
        self.output_modules = nn.ModuleList([nn.GroupNorm(_groups(width), width, eps=1e-6),
                                             nn.Conv2d(width, 2 * cfg.channels, 3, padding=1)])

    def forward(self, x, t):
        cfg = self.cfg
        temb = timestep_embedding(t * cfg.time_scale_factor, cfg.time_embed_dim).to(self.input_conv.weight.dtype)
        temb = self.temb_modules[1](F.silu(self.temb_modules[0](temb)))
        h = self.input_conv(x)
        skips = [h]
        for module in self.downsampling_modules:
            if isinstance(module, AttnBlock):
                h = module(h)
                skips[-1] = h  # the skip after a scale's attention is the attended one
                continue
            h = module(h, temb)
            skips.append(h)
        for module in self.middle_modules:
            h = module(h) if isinstance(module, AttnBlock) else module(h, temb)
        for module in self.upsampling_modules:
            if isinstance(module, ResBlock):
                h = module(torch.cat([h, skips.pop()], dim=1), temb)
            elif isinstance(module, AttnBlock):
                h = module(h)
            else:
                h = module(h)
        h = self.output_modules[1](F.silu(self.output_modules[0](h)))
        C = cfg.channels
        return torch.cat([torch.tanh(x + h[:, :C]), h[:, C:]], dim=1)


def _log_minus_exp(a, b):
    return a + torch.log1p(-torch.exp(b - a) + LOGISTIC_EPS)


class TauLDRNet(nn.Module):
    """tauLDR's x0 predictor: ``forward(x_t [B, C*H*W] long, sigma_bar [B]) -> log p(x0 | x_t)``
    float32 [B, C*H*W, S]. ``autocast=True`` runs the UNet in bf16 autocast on CUDA; the
    logistic head runs in float32."""

    def __init__(self, config: TauLDRConfig | None = None, autocast: bool = False):
        super().__init__()
        self.config = config if config is not None else TauLDRConfig.cifar10()
        self.autocast = bool(autocast)
        self.net = UNet(self.config)
        self._noise = self.config.make_noise()
        self.origin: dict = {}

    def logits(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """tauLDR's unnormalised logits [B, C*H*W, S] at times t [B] (its `forward`)."""
        cfg = self.config
        B, D = x_t.shape
        if D != cfg.length:
            raise ValueError(f"tauLDR: expected {cfg.length} values per sample (C*H*W), got {D}")
        C, H, S = cfg.channels, cfg.image_size, cfg.levels
        x = x_t.reshape(B, C, H, H).to(self.net.input_conv.weight.dtype)
        x = 2.0 * (x / (S - 1)) - 1.0  # data_min_max = (0, S - 1) -> [-1, 1], as tauLDR
        use = self.autocast and x_t.device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use else contextlib.nullcontext()
        with ctx:
            out = self.net(x, t.reshape(B).to(x.dtype))
        out = out.float()
        mu, log_scale = out[:, :C, ..., None], out[:, C:, ..., None]
        inv_scale = torch.exp(-(log_scale - 2.0))
        width = 2.0 / S
        centres = torch.linspace(-1.0 + width / 2, 1.0 - width / 2, S, device=x_t.device, dtype=torch.float32)
        left = (centres - width / 2 - mu) * inv_scale
        right = (centres + width / 2 - mu) * inv_scale
        log_left, log_right = F.logsigmoid(left), F.logsigmoid(right)
        logits = _log_minus_exp(log_right, log_left)
        if cfg.fix_logistic:
            logits = torch.minimum(logits, _log_minus_exp(-left + log_left, -right + log_right))
        return logits.reshape(B, D, S)

    def forward(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        t = self._noise.time(sigma_bar.to(torch.float64).reshape(-1))
        return torch.log_softmax(self.logits(x_t, t), dim=-1)


def as_score_model(net: TauLDRNet, ratio_eps: float = 1e-9) -> X0Score:
    """The score model of a tauLDR network on its graph (`lsd.X0Score`)."""
    return X0Score(net, net.config.make_graph(), ratio_eps=ratio_eps)


def count_parameters(config: TauLDRConfig | None = None) -> tuple[int, int]:
    """(tensors, parameters) of a config, built on the meta device."""
    config = config if config is not None else TauLDRConfig.cifar10()
    with torch.device("meta"):
        net = TauLDRNet(config)
    state = net.state_dict()
    return len(state), sum(v.numel() for v in state.values())
