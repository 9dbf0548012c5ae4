"""The SEDD/RADD DiT: hub key layout, parameter counts, save/load round trips, strict
checkpoint errors, offline Hub errors and the score-model output convention.

Full-size models are only built on the meta device; everything that computes uses a tiny
random-weight model. No test touches the network (HF_HUB_OFFLINE=1 throughout).
"""
import json
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lsd  # noqa: E402
from lsd.backbones import (BackboneNotAvailable, CheckpointError, DiT, DiTConfig, as_score_model,  # noqa: E402
                           build_dit, load_dit, load_gpt2_tokenizer, save_dit)
from lsd.backbones.dit import apply_rotary  # noqa: E402
from lsd.backbones.hub import read_config  # noqa: E402
from lsd.backbones.hub_config import from_hub_config, to_hub_config  # noqa: E402

TINY = dict(tokens=50, hidden_size=32, n_heads=2, n_blocks=2, cond_dim=16, length=16)

# The shape of the SEDD-small hub config.json (the hydra config of the training run).
SEDD_SMALL_HUB = {
    "ngpus": 8, "tokens": 50257,
    "training": {"batch_size": 512, "accum": 1, "n_iters": 1300001, "ema": 0.9999},
    "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
    "graph": {"type": "absorb", "file": "data", "report_all": False},
    "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
    "sampling": {"predictor": "euler", "steps": 128, "noise_removal": True},
    "model": {"name": "small", "type": "ddit", "hidden_size": 768, "cond_dim": 128, "length": 1024,
              "n_blocks": 12, "n_heads": 12, "scale_by_sigma": True, "dropout": 0.1},
}
# RADD's upstream config: no graph section, model.type 'ddit_wot'.
RADD_SMALL_HUB = {
    "tokens": 50257, "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
    "training": {"loss_type": "t_DCE"},
    "model": {"name": "small_radd", "type": "ddit_wot", "hidden_size": 768, "cond_dim": 128, "length": 1024,
              "n_blocks": 12, "n_heads": 12, "dropout": 0.02, "use_checkpoint": False, "dtype": "float16"},
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        from huggingface_hub import constants
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    except ImportError:
        pass


def reference_keys() -> dict:
    """SEDD-small's parameter names and shapes (tests/data/sedd-small.keys.tsv, read off the
    public SEDD model code: name TAB shape as AxB)."""
    path = Path(__file__).resolve().parent / "data" / "sedd-small.keys.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name.strip(): tuple(int(d) for d in shape.strip().split("x")) for name, shape in rows}


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def tiny(kind="sedd", seed=0) -> DiT:
    cfg = DiTConfig(kind=kind, scale_by_sigma=kind == "sedd", **TINY)
    torch.manual_seed(seed)
    net = DiT(cfg)
    with torch.no_grad():  # SEDD initialises adaLN and the output layer at 0: randomise everything
        for name, p in net.named_parameters():
            p.normal_(0.0, 0.3 if "embedding" not in name else 1.0)
    return net.eval()


def inputs(b=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, TINY["tokens"] + 1, (b, TINY["length"]), generator=g)  # real tokens and masks
    sigma = torch.tensor([0.05, 1.0, 6.9][:b], dtype=torch.float64)
    return x, sigma


# 1-3: layout on the meta device ---------------------------------------------------------

def test_sedd_small_matches_reference_keys_and_shapes():
    expected = reference_keys()
    cfg = from_hub_config(SEDD_SMALL_HUB)
    assert (cfg.kind, cfg.graph, cfg.tokens, cfg.num_classes) == ("sedd", "absorbing", 50257, 50258)
    net = build_dit(cfg, device="meta")
    state = net.state_dict()
    assert sorted(state) == sorted(expected), (set(state) ^ set(expected))
    bad = {k: (tuple(state[k].shape), v) for k, v in expected.items() if tuple(state[k].shape) != v}
    assert not bad
    assert len(state) == 131
    assert n_params(net) == pytest.approx(169.6e6, abs=0.05e6)
    # the hub json round-trips, the training sections included
    assert to_hub_config(cfg) == SEDD_SMALL_HUB
    assert from_hub_config({"config": SEDD_SMALL_HUB}) == cfg
    x = torch.zeros(2, 1024, dtype=torch.long, device="meta")
    assert net(x, torch.ones(2, dtype=torch.float64, device="meta")).shape == (2, 1024, 50258)


def test_sedd_medium_on_meta():
    net = build_dit(DiTConfig.sedd("medium"), device="meta")
    assert n_params(net) == pytest.approx(424.5e6, abs=0.05e6)
    state = net.state_dict()
    assert state["blocks.23.attn_qkv.weight"].shape == (3072, 1024)
    assert state["blocks.23.adaLN_modulation.weight"].shape == (6144, 128)
    assert state["rotary_emb.inv_freq"].shape == (32,)  # head dim 1024 / 16 = 64


def test_radd_on_meta_has_no_time_conditioning_and_biased_norms():
    cfg = from_hub_config(RADD_SMALL_HUB)
    assert (cfg.kind, cfg.graph, cfg.dropout) == ("radd", "absorbing", 0.02)
    net = build_dit(cfg, device="meta")
    x, sigma = torch.zeros(2, 1024, dtype=torch.long, device="meta"), torch.ones(2, dtype=torch.float64, device="meta")
    assert net(x, sigma).shape == (2, 1024, 50257)
    assert as_score_model(net)(x, sigma).shape == (2, 1024, 50258)
    state = net.state_dict()
    assert not [k for k in state if k.startswith("sigma_map") or "adaLN" in k]
    for norm in ("blocks.0.norm1", "blocks.11.norm2", "output_layer.norm_final"):
        assert state[f"{norm}.weight"].shape == state[f"{norm}.bias"].shape == (768,)
    assert state["output_layer.linear.weight"].shape == (50258, 768)  # upstream keeps the mask row
    assert state["vocab_embed.embedding"].shape == (50258, 768)
    sedd_keys = set(reference_keys())
    assert len(state) == len(sedd_keys) - 4 - 12 * 2 - 2 + 12 * 2 + 1  # -sigma_map -adaLN +biases
    # written back in the same layout (graph section added), upstream keys kept
    hub = to_hub_config(cfg)
    assert hub["model"]["type"] == "ddit_wot" and hub["model"]["dtype"] == "float16"
    assert hub["graph"] == {"type": "absorb"} and from_hub_config(hub) == cfg


def test_config_validation():
    with pytest.raises(ValueError, match="absorbing"):
        DiTConfig(kind="radd", graph="uniform", **TINY)
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(**{**TINY, "n_heads": 3})
    with pytest.raises(ValueError, match="model.type"):
        from_hub_config({**SEDD_SMALL_HUB, "model": {**SEDD_SMALL_HUB["model"], "type": "unet"}})
    uniform = from_hub_config({**SEDD_SMALL_HUB, "graph": {"type": "uniform"},
                                       "noise": {"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20},
                                       "model": {**SEDD_SMALL_HUB["model"], "scale_by_sigma": False}})
    assert uniform.num_classes == 50257 and uniform.make_noise().sigma_max == 20


# 4: save / load round trips ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sedd", "radd"])
def test_save_load_both_layouts(tmp_path, kind):
    net = tiny(kind)
    x, sigma = inputs()
    with torch.no_grad():
        ref = net(x, sigma)
    outs = {}
    for layout in ("safetensors", "bin"):
        folder = save_dit(net, tmp_path / layout, extra_config={"lsd": {"note": "test"}}, layout=layout)
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(["config.json", "model.safetensors" if layout == "safetensors" else "pytorch_model.bin"])
        assert json.loads((folder / "config.json").read_text())["lsd"] == {"note": "test"}
        loaded = load_dit(folder)
        assert loaded.config == net.config and not loaded.training
        with torch.no_grad():
            outs[layout] = loaded(x, sigma)
        assert outs[layout].dtype == torch.float32
        assert torch.equal(outs[layout], ref)
    # re-saving in the other layout removes the stale weight file
    save_dit(net, tmp_path / "bin", layout="safetensors")
    assert not (tmp_path / "bin" / "pytorch_model.bin").exists()
    # low-precision load: bf16 weights, float32 rotary buffer and outputs
    half = load_dit(tmp_path / "safetensors", dtype=torch.bfloat16)
    assert half.blocks[0].attn_qkv.weight.dtype == torch.bfloat16
    assert half.rotary_emb.inv_freq.dtype == torch.float32
    with torch.no_grad():
        out = half(x, sigma)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# 5: corrupt checkpoints ---------------------------------------------------------------------

def _corrupt(tmp_path, edit):
    from safetensors.torch import load_file, save_file

    folder = save_dit(tiny(), tmp_path / "ckpt")
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    folder = _corrupt(tmp_path, lambda s: s.pop("blocks.1.mlp.0.bias"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing: blocks\.1\.mlp\.0\.bias"):
        load_dit(folder)
    folder = _corrupt(tmp_path, lambda s: s.update({"blocks.0.attn_qkv.bias": torch.zeros(96)}))
    with pytest.raises(CheckpointError, match=r"unexpected: blocks\.0\.attn_qkv\.bias"):
        load_dit(folder)
    folder = _corrupt(tmp_path, lambda s: s.update({"output_layer.linear.bias": torch.zeros(50)}))
    with pytest.raises(CheckpointError, match=r"shape mismatch: output_layer\.linear\.bias \(50,\) vs model \(51,\)"):
        load_dit(folder)
    folder = _corrupt(tmp_path, lambda s: s["blocks.0.norm1.weight"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match=r"non-finite.*blocks\.0\.norm1\.weight"):
        load_dit(folder)
    # a SEDD state dict under a RADD config: every category at once, on one line
    folder = save_dit(tiny("sedd"), tmp_path / "mixed")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["type"] = "ddit_wot"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as err:
        load_dit(folder)
    msg = str(err.value)
    assert "\n" not in msg and "missing" in msg and "unexpected" in msg and "adaLN_modulation" in msg


def test_unreadable_files(tmp_path):
    folder = save_dit(tiny(), tmp_path / "trunc")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"trunc/model\.safetensors: not a readable safetensors"):
        load_dit(folder)
    weights.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_dit(folder)
    # a pickle that needs full unpickling is refused (weights_only)
    folder = save_dit(tiny(), tmp_path / "pickle", layout="bin")
    torch.save({"vocab_embed.embedding": _Opaque()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: not a readable torch \(weights_only\)"):
        load_dit(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: unreadable"):
        load_dit(folder)
    with pytest.raises(BackboneNotAvailable, match="no config.json"):
        load_dit(tmp_path)
    with pytest.raises(BackboneNotAvailable, match="no such directory"):
        load_dit(tmp_path / "nowhere")


class _Opaque:
    pass


# 6: Hub unreachable ------------------------------------------------------------------------

def test_unknown_hub_id_offline_gives_download_hint(tmp_path):
    with pytest.raises(BackboneNotAvailable) as err:
        load_dit("lsd-tests/no-such-sedd", cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "not in the Hugging Face cache" in msg and "hf download lsd-tests/no-such-sedd" in msg
    assert "config.json + model.safetensors" in msg and str(tmp_path) in msg
    with pytest.raises(BackboneNotAvailable, match="huggingface-cli download louaaron/sedd-small"):
        load_dit("louaaron/sedd-small", cache_dir=tmp_path)


def test_tokenizer_offline_error():
    pytest.importorskip("transformers")
    with pytest.raises(BackboneNotAvailable, match="tokenizer lsd-tests/no-such-tokenizer is not in the"):
        load_gpt2_tokenizer("lsd-tests/no-such-tokenizer")


# 7: output convention and sampling -------------------------------------------------------------

def test_sedd_output_convention_and_offset():
    net = tiny("sedd")
    x, sigma = inputs()
    with torch.no_grad():
        out = net(x, sigma)
    assert out.shape == (3, TINY["length"], TINY["tokens"] + 1) and out.dtype == torch.float32
    assert torch.equal(out.gather(-1, x[..., None]), torch.zeros_like(x[..., None], dtype=torch.float32))
    # with a zero output layer, every other entry is exactly -log(expm1(sigma_bar)) - log(V)
    with torch.no_grad():
        net.output_layer.linear.weight.zero_()
        net.output_layer.linear.bias.zero_()
        flat = net(x, sigma)
    expected = -(torch.log(torch.expm1(sigma)) + math.log(TINY["tokens"])).float()
    off = torch.ones_like(flat, dtype=torch.bool).scatter(-1, x[..., None], False)
    assert torch.allclose(flat, expected[:, None, None].expand_as(flat).where(off, torch.zeros(())), atol=1e-6)


def test_radd_output_is_log_denoiser_and_score():
    net = tiny("radd")
    x, sigma = inputs()
    with torch.no_grad():
        log_p = net(x, sigma)
        assert torch.equal(log_p, net(x, None))  # no time conditioning
        score = as_score_model(net)(x, sigma)
    assert log_p.shape == (3, TINY["length"], TINY["tokens"])
    assert torch.allclose(log_p.logsumexp(-1), torch.zeros(()), atol=1e-5)
    assert score.shape == (3, TINY["length"], TINY["tokens"] + 1)
    assert torch.equal(score.gather(-1, x[..., None]), torch.zeros_like(x[..., None], dtype=torch.float32))


@pytest.mark.parametrize("kind", ["sedd", "radd"])
def test_runs_through_lsd_sample(kind):
    net = tiny(kind)
    model = lsd.CallCounter(as_score_model(net))
    schedule = lsd.Schedule.uniform("euler", 4)
    out = lsd.sample(model, schedule, graph=lsd.AbsorbingGraph(TINY["tokens"]), noise=lsd.LogLinearNoise(),
                     num_samples=4, length=TINY["length"], batch_size=4, seed=0)
    assert out.shape == (4, TINY["length"])
    assert int(out.min()) >= 0 and int(out.max()) < TINY["tokens"]  # no mask left
    assert model.calls == schedule.nfe


# 8: the network mixes positions, is conditioned on sigma, rotary is relative -------------------

@pytest.mark.parametrize("kind", ["sedd", "radd"])
def test_attention_mixes_positions(kind):
    net = tiny(kind)
    x, sigma = inputs(b=1)
    x2 = x.clone()
    x2[0, 9] = (x2[0, 9] + 1) % TINY["tokens"]
    with torch.no_grad():
        a, b = net(x, sigma), net(x2, sigma)
    others = [i for i in range(TINY["length"]) if i != 9]
    assert (a[0, others] - b[0, others]).abs().amax(-1).min() > 1e-6  # every other position sees it


def test_sedd_depends_on_sigma_beyond_the_offset():
    net = tiny("sedd")
    x = torch.full((2, TINY["length"]), TINY["tokens"])  # all masked
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    with torch.no_grad():
        out = net(x, sigma)
    raw = out + (torch.log(torch.expm1(sigma)) + math.log(TINY["tokens"])).float()[:, None, None]
    assert (raw[0, :, :-1] - raw[1, :, :-1]).abs().max() > 1e-3


def test_rotary_scores_depend_on_relative_position_only():
    net = tiny("sedd")
    cos, sin = net.rotary_emb(12, "cpu")
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)
    rq = apply_rotary(q.expand(1, 12, 1, 16), cos, sin)[0, :, 0]
    rk = apply_rotary(k.expand(1, 12, 1, 16), cos, sin)[0, :, 0]
    scores = rq @ rk.T  # [12, 12]
    for shift in (1, 5):
        assert torch.allclose(scores[: 12 - shift, : 12 - shift], scores[shift:, shift:], atol=1e-5)
    assert not torch.allclose(scores[0, 0], scores[0, 3])
    assert torch.equal(net.rotary_emb.inv_freq, 1.0 / 10000 ** (torch.arange(0, 16, 2).float() / 16))


def test_read_config_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"tokens": 5}))
    with pytest.raises(CheckpointError, match=r"config\.json: .*'model' section"):
        read_config(path)
