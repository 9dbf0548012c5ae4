"""The tauLDR UNet: full-size shapes on the meta device, the logistic head, and the loader of the
released checkpoint on files written here in the same pickle layout (small width)."""
import io
import zipfile

import numpy as np
import pytest
import torch

import lsd
from lsd.backbones.hub import BackboneNotAvailable, CheckpointError
from lsd.backbones.registry import load_backbone
from lsd.backbones.tauldr import TauLDRConfig, TauLDRNet, as_score_model, count_parameters
from lsd.backbones.tauldr_io import load_tauldr, load_tauldr_dir, missing_hint, save_tauldr

SMALL = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_scale=1, image_size=8)


def test_full_size_network_has_tauldrs_shapes():
    tensors, params = count_parameters(TauLDRConfig.cifar10())
    assert (tensors, params) == (328, 35_749_766)
    with torch.device("meta"):
        state = TauLDRNet(TauLDRConfig.cifar10()).state_dict()
    # a few names and shapes of tauLDR's layout: temb MLP, attention at scale 1 (16x16), NiN W [in, out]
    assert tuple(state["net.temb_modules.0.weight"].shape) == (512, 128)
    assert tuple(state["net.downsampling_modules.4.NIN_0.W"].shape) == (256, 256)
    assert tuple(state["net.downsampling_modules.3.nin.W"].shape) == (128, 256)
    assert tuple(state["net.middle_modules.1.GroupNorm_0.weight"].shape) == (256,)
    assert tuple(state["net.upsampling_modules.0.conv0.weight"].shape) == (256, 512, 3, 3)
    assert tuple(state["net.output_modules.1.weight"].shape) == (6, 128, 3, 3)
    assert sum(k.endswith("NIN_3.W") for k in state) == 2 + 1 + 3  # attention after each res block at 16x16, middle


def small_net(seed=0, **overrides):
    torch.manual_seed(seed)
    net = TauLDRNet(TauLDRConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # zero-initialised layers too: every weight matters
    return net


def test_forward_is_a_normalised_discretised_logistic():
    net = small_net()
    x = torch.randint(0, 256, (2, net.config.length))
    sb = torch.tensor([0.5, 30.0], dtype=torch.float64)
    with torch.no_grad():
        log_p = net(x, sb)
        raw = net.net(2.0 * (x.reshape(2, 3, 8, 8).float() / 255) - 1.0, net._noise.time(sb).float())
    assert log_p.shape == (2, net.config.length, 256) and log_p.dtype == torch.float32
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(2, net.config.length))
    # logit_v = log(sigmoid(r_v) - sigmoid(l_v) + ~1e-6 sigmoid(r_v)) from the mean and log-scale channels
    mu, log_scale = raw[:, :3].reshape(2, -1, 1).double(), raw[:, 3:].reshape(2, -1, 1).double()
    edges = torch.linspace(-1.0, 1.0, 257, dtype=torch.float64)
    inv = torch.exp(2.0 - log_scale)
    right, left = torch.sigmoid((edges[1:] - mu) * inv), torch.sigmoid((edges[:-1] - mu) * inv)
    expected = torch.log(right - left + 1e-6 * right)
    # float32 cancellation in the tail bins (as in tauLDR): compare probabilities
    torch.testing.assert_close(log_p.double().exp(), torch.softmax(expected, -1), atol=1e-5, rtol=0)
    assert (raw[:, :3].abs() <= 1).all()  # the mean passes through tanh(x + h)


def write_tauldr_checkpoint(path, net, ema_net, n_iter=1999999, mangle=None):
    """tauLDR's layout: model = {net.module.*: online weights, ema_decay, ema_num_updates,
    ema_shadow_params: [EMA tensors in state-dict order]}, optimizer with a numpy float, n_iter."""
    online = {k.replace("net.", "net.module.", 1): v.clone() for k, v in net.state_dict().items()}
    model = {**online, "ema_decay": 0.9999, "ema_num_updates": 12,
             "ema_shadow_params": [v.clone() for v in ema_net.state_dict().values()]}
    if mangle is not None:
        mangle(model)
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": np.float64(2e-4), "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"model": model, "optimizer": optimizer, "n_iter": n_iter}, path)


def as_numpy1_pickle(path):
    """Rewrite the pickle's numpy 2 module name as numpy 1 writes it (the released file's era)."""
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zout:
        for info, content in items:
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in content
                content = content.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(info, content)
    path.write_bytes(out.getvalue())


@pytest.mark.parametrize("numpy1", [False, True])
def test_loader_reads_tauldrs_layout_with_ema_by_default(tmp_path, numpy1):
    net, ema = small_net(0), small_net(1)
    path = tmp_path / "ckpt.pt"
    write_tauldr_checkpoint(path, net, ema)
    if numpy1:
        as_numpy1_pickle(path)
    config = TauLDRConfig(**SMALL)
    loaded = load_tauldr(path, config=config)
    assert loaded.origin["weights"] == "ema" and loaded.origin["n_iter"] == 1999999
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ema.state_dict().items())
    online = load_tauldr(path, ema=False, config=config)
    assert online.origin["weights"] == "online"
    assert all(torch.equal(online.state_dict()[k], v) for k, v in net.state_dict().items())
    x = torch.randint(0, 256, (2, config.length))
    sb = torch.tensor([0.2, 5.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sb), ema(x, sb), rtol=0, atol=0)


def test_loader_refuses_bad_files_with_one_line(tmp_path):
    net = small_net()
    config = TauLDRConfig(**SMALL)
    for name, mangle, match in [
        ("missing", lambda m: m.pop("net.module.input_conv.bias"), "missing: net.input_conv.bias"),
        ("extra", lambda m: m.__setitem__("net.module.spare.weight", torch.zeros(1)), "unexpected: net.spare.weight"),
        ("shape", lambda m: m.__setitem__("net.module.input_conv.bias", torch.zeros(9)), "net.input_conv.bias"),
    ]:
        path = tmp_path / f"{name}.pt"
        # ema=False reads the named tensors; the EMA list is checked against them first
        write_tauldr_checkpoint(path, net, net, mangle=mangle)
        with pytest.raises(CheckpointError, match=match) as err:
            load_tauldr(path, ema=False, config=config)
        assert "\n" not in str(err.value)
    path = tmp_path / "short.pt"
    write_tauldr_checkpoint(path, net, net, mangle=lambda m: m["ema_shadow_params"].pop())
    with pytest.raises(CheckpointError, match="EMA tensors"):
        load_tauldr(path, config=config)
    # anything beyond the allow-listed numpy float is refused, never unpickled
    import argparse

    path = tmp_path / "foreign.pt"
    torch.save({"model": {}, "optimizer": argparse.Namespace(lr=1.0), "n_iter": 1}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_tauldr(path, config=config)


def test_missing_checkpoint_says_where_to_get_it_and_where_to_put_it(tmp_path, monkeypatch):
    target = tmp_path / "nowhere" / "ckpt_0001999999.pt"
    monkeypatch.setenv("LSD_TAULDR_CHECKPOINT", str(target))
    with pytest.raises(BackboneNotAvailable) as err:
        load_backbone("tauldr-cifar10")
    text = str(err.value)
    assert "\n" not in text and text == missing_hint(target)
    assert "cifar10/checkpoints/ckpt_0001999999.pt" in text and "dropbox" in text and f"put it at {target}" in text
    monkeypatch.delenv("LSD_TAULDR_CHECKPOINT")
    monkeypatch.setenv("LSD_CHECKPOINTS", str(tmp_path))
    with pytest.raises(BackboneNotAvailable, match=str(tmp_path / "tauldr-cifar10" / "ckpt_0001999999.pt")):
        load_backbone("tauldr-cifar10")


def test_saved_directory_round_trips_and_samples(tmp_path):
    graph = {"type": "gaussian", "num_tokens": 17, "rate_sigma": 0.4, "q_sigma": 34.0}
    net = small_net(channels=1, levels=17, graph=graph)
    save_tauldr(net, tmp_path, extra_config={"note": 1})
    loaded = load_tauldr_dir(tmp_path)
    assert loaded.config == net.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    model = lsd.CallCounter(as_score_model(loaded))
    for base in ("euler", "tauleap", "tweedie"):
        x = lsd.sample(model, lsd.Schedule.uniform(base, 3), graph=loaded.config.make_graph(),
                       noise=loaded.config.make_noise(), num_samples=3, length=64, seed=0)
        assert x.shape == (3, 64) and 0 <= int(x.min()) and int(x.max()) <= 16
    assert model.calls == 9
