"""Backbones with slots, the classifier, build_model, pretrained loading and conversion."""

from __future__ import annotations

from pathlib import Path

import pytest
import reference
import torch
import torchvision
from official import official_state_dict, save_official
from torch import nn

from videoattn.attention import SLOTS, build_attention, get_spec, list_attention
from videoattn.attention.action import Action
from videoattn.attention.tam import TAM
from videoattn.config import model_configs
from videoattn.models import build_model
from videoattn.models.build import load_pretrained
from videoattn.models.convert import convert_checkpoint, convert_state_dict
from videoattn.summary import count_macs, count_params, model_summary

T = 4
TINY = {"layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128]}
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def tiny(inserts=(), arch="resnet50", **kw):
    torch.manual_seed(0)
    return build_model({"arch": arch, "num_classes": 5, "num_segments": T, "inserts": list(inserts), **TINY, **kw})


def video(n=2, size=64, t=T, seed=0, frames=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, 3 * frames, size, size, generator=g)  # (N, T, F*3, H, W)


def parameter_free(name):
    """Whether the registry module has no parameters (the TSM shifts): no inserted tensors to check."""
    return not list(build_attention(name, 64, num_segments=T).parameters())


def supported_slots(name):
    scope = get_spec(name).scope
    return {"head": ["head"], "stage": ["output"], "conv": ["conv"], "stem": ["stem"]}.get(scope, list(SLOTS))


CASES = [(n, s) for n in list_attention() for s in supported_slots(n)]


@pytest.mark.parametrize("name, slot", CASES)
def test_every_module_in_every_slot_trains_in_a_tiny_resnet(name, slot):
    model = tiny([{"name": name, "slot": slot}]).train()
    x = video(frames=model.frames_per_segment)
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    loss = logits.logsumexp(1).sum() + sum(v.sum() for v in aux.values())
    loss.backward()
    inserted = [p for n, p in model.named_parameters() if ".att_" in n or ".dia." in n or n.startswith("head.")]
    assert inserted or parameter_free(name), "the insert has no parameters in the model"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in inserted)


@pytest.mark.parametrize("name", [n for n in list_attention() if get_spec(n).scope != "conv"])  # no 3x3 + BN pair
def test_every_module_in_its_default_slot_of_a_basic_block_resnet(name):
    model = tiny([{"name": name}], arch="resnet18").eval()
    with torch.no_grad():
        assert model(video(frames=model.frames_per_segment)).shape == (2, 5)


def test_slots_sit_where_the_design_says():
    """input/after_conv1/before_last/output receive C_in / width / width / 4*width channels."""
    model = tiny([{"name": "gct", "slot": s} for s in SLOTS])
    b = model.backbone.layer2[0]  # inplanes 64, planes 32, out 128
    assert [getattr(b, f"att_{s}").gct.alpha.shape[1] for s in SLOTS] == [64, 32, 32, 128]
    seen = []
    hooks = [getattr(b, f"att_{s}").register_forward_hook(lambda m, i, o, s=s: seen.append(s)) for s in SLOTS]
    model(video())
    assert seen[:4] == list(SLOTS)
    for h in hooks:
        h.remove()


def test_stages_every_and_blocks_select_blocks():
    m = build_model({"arch": "resnet50", "num_classes": 3, "num_segments": T,
                     "inserts": [{"name": "se", "stages": [3, 4]}, {"name": "tsm", "every": 2},
                                 {"name": "gct", "blocks": [-1]}]})  # fmt: skip
    bb = m.backbone
    assert bb.layer1[0].att_output is None and bb.layer3[5].att_output is not None
    assert [bb.layer3[i].att_input is not None for i in range(6)] == [True, False] * 3
    assert [bb.layer2[i].att_before_last is not None for i in range(4)] == [False] * 3 + [True]


def test_official_stage_dependent_defaults():
    """FcaNet's DCT size follows the stage (56/28/14/7), GSoP reduces with stride 2 in stage 1;
    explicit kwargs win."""
    m = build_model({"arch": "resnet50", "num_classes": 3, "num_segments": T,
                     "inserts": [{"name": "fca"}, {"name": "gsop", "blocks": [-1]}]})  # fmt: skip
    bb = m.backbone
    assert [getattr(bb, f"layer{s}")[0].att_output.fca.dct_size for s in (1, 2, 3, 4)] == [
        (56, 56),
        (28, 28),
        (14, 14),
        (7, 7),
    ]
    assert bb.layer1[2].att_output.gsop.conv_for_DR.stride == (2, 2)
    assert bb.layer2[3].att_output.gsop.conv_for_DR.stride == (1, 1)
    m = tiny([{"name": "fca", "kwargs": {"dct_size": 7}}])
    assert m.backbone.layer1[0].att_output.fca.dct_size == (7, 7)


def _record_steps(module, log, tag):
    """Wrap ``module.step`` to append ``(tag, state is None)`` to ``log`` at every call."""
    orig = module.step
    module.step = lambda x, state: (log.append((tag, state is None)), orig(x, state))[1]


def test_dia_is_one_lstm_per_stage_shared_by_its_blocks():
    m = tiny([{"name": "dia"}], layers=[2, 2, 2, 2])
    assert sum(1 for n, _ in m.named_modules() if n.endswith(".dia")) == 4
    m.eval()
    steps = []  # the stage threads the state: zero state at block 0, carried into block 1
    _record_steps(m.backbone.layer1.dia, steps, "dia")
    m(video())
    assert steps == [("dia", True), ("dia", False)]


def test_a_stage_scoped_insert_runs_only_in_the_blocks_it_selects():
    m = tiny([{"name": "dia", "blocks": [-1], "stages": [2]}], layers=[1, 3, 1, 1]).eval()
    stage = m.backbone.layer2
    assert stage.shared == {"dia": (2,)} and not m.backbone.layer1.shared
    calls = []
    _record_steps(stage.dia, calls, "dia")
    blocks_run = []
    for i in range(3):
        stage[i].register_forward_pre_hook(lambda mod, args, i=i: blocks_run.append(i))  # plain forward only
    with torch.no_grad():
        m(video())
    assert calls == [("dia", True)]  # once, in the last block, from the zero state
    assert blocks_run == [0, 1]  # blocks 0 and 1 ran without it
    every = tiny([{"name": "dia", "every": 2, "stages": [2]}], layers=[1, 3, 1, 1])
    assert every.backbone.layer2.shared == {"dia": (0, 2)}


def test_two_stage_scoped_inserts_on_one_stage_both_run_with_their_own_state():
    m = tiny(
        [{"name": "dia", "stages": [1]}, {"name": "dia", "stages": [1], "blocks": [1], "kwargs": {"reduction": 8}}],
        layers=[2, 1, 1, 1],
    ).eval()
    stage = m.backbone.layer1
    assert stage.shared == {"dia": (0, 1), "dia_1": (1,)}
    assert stage.dia_1.w_ih[0].out_features == stage.dia.w_ih[0].out_features // 2  # its own kwargs
    calls = []
    _record_steps(stage.dia, calls, "dia")
    _record_steps(stage.dia_1, calls, "dia_1")
    with torch.no_grad():
        m(video())
    assert calls == [("dia", True), ("dia", False), ("dia_1", True)]
    keys = m.state_dict().keys()
    assert any(k.startswith("backbone.layer1.dia_1.") for k in keys)


def test_a_new_module_needs_only_its_registry_row(monkeypatch):
    """The models follow the registry row alone: a stage-scoped module, a stage default and a
    head module with an auxiliary loss and a setting from the model, none of them known by name."""
    from videoattn.attention import registry

    class Counter(nn.Module):  # stage-scoped: counts the blocks it gated, scales by 1/count
        def __init__(self, channels, *, scale=1.0):
            super().__init__()
            self.scale = scale

        def step(self, x, state):
            n = 1 if state is None else state + 1
            return x * (self.scale / n), n

    class Aux(nn.Module):  # head module with an auxiliary loss, sized by the model's classes
        def __init__(self, channels, *, num_classes=None, weight=1.0):
            super().__init__()
            self.lin, self.weight = nn.Linear(channels, num_classes), weight

        def forward_with_aux(self, x):
            return x, self.lin(x.mean((2, 3)))  # per frame (N*T, K)

        def aux_loss(self, out, labels):
            return self.weight * nn.functional.cross_entropy(out, labels)

        def forward(self, x):
            return x

    rows = {
        "counter": registry._spec(
            "counter",
            Counter,
            False,
            "output",
            "p",
            None,
            "v",
            scope="stage",
            stage_defaults=lambda s: {"scale": float(s)},
        ),
        "auxhead": registry._spec(
            "auxhead", Aux, False, "head", "p", None, "v", scope="head", from_model=("num_classes",)
        ),
    }
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, **rows})
    m = tiny([{"name": "counter", "stages": [3]}, {"name": "auxhead", "kwargs": {"weight": 0.5}}], layers=[1, 1, 2, 1])
    assert m.backbone.layer3.counter.scale == 3.0 and m.backbone.layer3.shared == {"counter": (0, 1)}
    assert m.head.auxhead.lin.out_features == 5
    logits, aux = m.train().forward_with_aux(video())
    assert aux["auxhead"].shape == (2, 5)
    labels = torch.tensor([1, 3])
    torch.testing.assert_close(m.aux_loss(aux, labels), 0.5 * nn.functional.cross_entropy(aux["auxhead"], labels))
    with pytest.raises(TypeError, match="step"):
        registry._spec("bad", Aux, False, "output", "p", None, "v", scope="stage")
    with pytest.raises(TypeError, match="head"):
        registry._spec("bad", Aux, False, "output", "p", None, "v")


def test_encnet_head_adds_its_weighted_se_loss():
    from videoattn.attention import se_loss

    m = tiny([{"name": "encnet"}]).train()
    logits, aux = m.forward_with_aux(video())
    assert aux["encnet"].shape == logits.shape == (2, 5)  # its SE head predicts the model's classes
    labels = torch.tensor([0, 4])
    torch.testing.assert_close(m.aux_loss(aux, labels), 0.2 * se_loss(aux["encnet"], labels))
    assert tiny().aux_loss({}, labels) is None
    m2 = tiny([{"name": "encnet", "kwargs": {"se_loss_weight": 1.0}}])
    assert m2.head.encnet.se_loss_weight == 1.0


def test_classifier_rejects_a_wrong_number_of_frames():
    m = tiny()
    with pytest.raises(ValueError, match=r"T=4.*got \(2, 8, 3, 64, 64\).*num_segments=4"):
        m(video(t=8))
    with pytest.raises(ValueError, match="Multi-view"):
        m(video().unsqueeze(1))


def test_consensus_is_the_mean_of_per_frame_logits():
    m = tiny().eval()
    x = video()
    with torch.no_grad():
        per_frame = m.fc(m.backbone(x.flatten(0, 1)).mean((2, 3))).view(2, T, 5)
        torch.testing.assert_close(m(x), per_frame.mean(1))


def test_partial_bn_freezes_all_bn_but_the_first():
    m = tiny(partial_bn=True).train()
    bns = [b for b in m.backbone.modules() if isinstance(b, nn.BatchNorm2d)]
    assert bns[0].training and bns[0].weight.requires_grad
    assert not any(b.training or b.weight.requires_grad for b in bns[1:])


@pytest.mark.parametrize(
    "cfg, match",
    [
        (
            {"arch": "resnet50", "num_classes": 5, "num_segments": 8, "dropot": 0.5},
            r"model.dropot: no such key \(did you mean model.dropout\?\)",
        ),
        ({"arch": "resnet51", "num_classes": 5, "num_segments": 8}, "model.arch='resnet51': expected one of resnet18"),
        ({"arch": "resnet50", "num_classes": 5}, "missing required key"),
        (
            {"arch": "resnet50", "num_classes": 5, "num_segments": 8, "inserts": [{"name": "se", "slt": "output"}]},
            r"inserts\[0\].*'slt'",
        ),
        ({"arch": "resnet50", "num_classes": 5, "num_segments": 8, "inserts": [{"name": "sse2"}]}, "'sse'"),
        (
            {
                "arch": "resnet50",
                "num_classes": 5,
                "num_segments": 8,
                "inserts": [{"name": "se", "kwargs": {"ratio": 4}}],
            },
            r"\['ratio'\]",
        ),
        (
            {
                "arch": "resnet50",
                "num_classes": 5,
                "num_segments": 8,
                "inserts": [{"name": "encnet", "slot": "output"}],
            },
            "head module",
        ),
    ],
)
def test_bad_model_configs_name_the_key(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


MOBILE_CASES = [(n, s) for n in list_attention() if get_spec(n).scope == "block" for s in ("input", "output")]


@pytest.mark.parametrize("name, slot", MOBILE_CASES)
def test_every_block_module_runs_in_mobilenet_v2(name, slot):
    torch.manual_seed(0)
    model = build_model({"arch": "mobilenet_v2", "num_classes": 5, "num_segments": T,
                         "inserts": [{"name": name, "slot": slot, "stages": [3, 4]}]}).train()  # fmt: skip
    logits = model(video(n=1))
    logits.sum().backward()
    inserted = [p for n, p in model.named_parameters() if ".att_" in n]
    assert inserted or parameter_free(name)
    assert all(p.grad is not None for p in inserted)


def test_mobilenet_v2_is_tsm_online_layout_and_loads_torchvision_weights(tmp_path):
    m = build_model({"arch": "mobilenet_v2", "num_classes": 5, "num_segments": T, "inserts": ["tsm"]})
    shifted = sorted(int(n.split(".")[2]) for n, _ in m.named_modules() if n.endswith("att_input"))
    assert shifted == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]  # the blocks with an identity shortcut
    path = tmp_path / "mbv2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    report = load_pretrained(m, path)
    assert report.not_initialised == ["fc.weight", "fc.bias"] and report.ignored == [
        "classifier.1.bias",
        "classifier.1.weight",
    ]
    with pytest.raises(ValueError, match="slots"):
        build_model({"arch": "mobilenet_v2", "num_classes": 5, "num_segments": T, "inserts": ["tam"]})
    with pytest.raises(ValueError, match="stages whose blocks share its state"):
        build_model({"arch": "mobilenet_v2", "num_classes": 5, "num_segments": T, "inserts": ["dia"]})


# ----------------------------------------------------------------------------- configs
MODEL_CONFIGS = model_configs(CONFIGS.parent)


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_model_configs_build(name):
    cfg = MODEL_CONFIGS[name]
    assert cfg["name"] == name
    small = TINY if cfg["arch"].startswith("resnet") else {}
    model = build_model({**cfg, "num_classes": 5, "num_segments": T, "pretrained": None, **small})
    with torch.no_grad():
        assert model.eval()(video(frames=model.frames_per_segment)).shape == (2, 5)


def test_there_is_a_config_for_every_module():
    files = {"tsn", "tsm_se", "tsm_mobilenet_v2", "tsm_online_mobilenet_v2"}
    assert set(list_attention()) | files <= set(MODEL_CONFIGS)
    assert MODEL_CONFIGS["gsop"]["inserts"] == [{"name": "gsop", "blocks": [-1]}]  # its file wins over the preset


# ----------------------------------------------------------------------------- pretrained
def test_torchvision_resnet50_weights_load_with_only_inserts_missing(tmp_path):
    tv = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), path)
    m = build_model({"arch": "resnet50", "num_classes": 7, "num_segments": T, "pretrained": str(path),
                     "inserts": [{"name": "action"}, {"name": "se", "stages": [3, 4]}, {"name": "dia"}]})  # fmt: skip
    own = m.backbone.state_dict()
    for k, v in tv.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k
    report = load_pretrained(m, path)
    assert report.ignored == ["fc.bias", "fc.weight"]
    inserted = {k for k in report.not_initialised if ".att_" in k or ".dia." in k}
    assert set(report.not_initialised) - inserted == {"fc.weight", "fc.bias"}
    assert any(".att_input.action." in k for k in inserted) and any(".layer4.dia." in k for k in inserted)


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, tmp_path / "hub" / "checkpoints" / Path(weights.url).name)
    m = build_model({"arch": "resnet18", "num_classes": 3, "num_segments": T, "pretrained": "imagenet"})
    assert torch.equal(m.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_imagenet_weights_offline_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError, match=r"hub/checkpoints/resnet50-0676ba61\.pth"):
        build_model({"arch": "resnet50", "num_classes": 3, "num_segments": T, "pretrained": "imagenet"})


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="another architecture"):
        build_model({"arch": "resnet50", "num_classes": 3, "num_segments": T, "pretrained": str(path)})
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_model({"arch": "resnet50", "num_classes": 3, "num_segments": T, "pretrained": str(tmp_path / "nope.pth")})


# ----------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("source", ["tsm", "tam", "action"])
def test_official_layouts_convert_and_load_strictly(source, tmp_path):
    src = save_official(tmp_path / f"{source.upper()}_something_RGB_resnet50_segment8_e45.pth", source)
    ckpt = convert_checkpoint(src, tmp_path / "out.pth", source=source)  # T from the file name
    assert ckpt["model_config"]["num_segments"] == 8 and ckpt["model_config"]["num_classes"] == 174
    saved = torch.load(tmp_path / "out.pth", weights_only=True)  # tensors and plain data only
    model = build_model(saved["model_config"])
    model.load_state_dict(saved["model"], strict=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, "out.pth"])  # no temporary file left


def _official_forward(source: str, sd: dict[str, torch.Tensor], x: torch.Tensor, t: int) -> torch.Tensor:
    """The official TSN forward rebuilt around torchvision's ResNet-50: the temporal module
    applied where the official wrappers apply it (reference formulations), new_fc per frame,
    average consensus."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    net = torchvision.models.resnet50(weights=None)
    base = {k.removeprefix("base_model."): v for k, v in sd.items() if k.startswith("base_model.")}
    base = {k.replace(".conv1.net.", ".conv1.").replace(".net.", "."): v for k, v in base.items()}
    net.load_state_dict({k: v for k, v in base.items() if ".tam." not in k and ".action_" not in k}, strict=False)
    net.fc = nn.Identity()
    for s, stage in enumerate((net.layer1, net.layer2, net.layer3, net.layer4), start=1):
        for b, blk in enumerate(stage):
            prefix = f"layer{s}.{b}."
            if source == "tsm":
                blk.conv1.register_forward_pre_hook(lambda m, a: (reference.tsm(_Tsm(t), a[0]),))
            elif source == "action":
                mod = Action(blk.conv1.in_channels, num_segments=t)
                mod.load_state_dict(
                    {
                        k.removeprefix(prefix + "conv1."): v
                        for k, v in base.items()
                        if k.startswith(prefix + "conv1.action_")
                    }
                )
                mod.eval()
                blk.conv1.register_forward_pre_hook(lambda m, a, mod=mod: (reference.action(mod, a[0]),))
            else:
                mod = TAM(blk.conv1.out_channels, num_segments=t)
                mod.load_state_dict(
                    {k.removeprefix(prefix + "tam."): v for k, v in base.items() if k.startswith(prefix + "tam.")}
                )
                mod.eval()
                blk.bn1.register_forward_hook(lambda m, a, out, mod=mod: reference.tam(mod, out.relu()))
    net.eval()
    n = x.shape[0]
    with torch.no_grad():
        feats = net(x.flatten(0, 1))
        logits = feats @ sd["new_fc.weight"].t() + sd["new_fc.bias"]
    return logits.view(n, t, -1).mean(1)


class _Tsm:
    def __init__(self, t):
        self.num_segments, self.shift_div = t, 8


@pytest.mark.parametrize("source", ["tsm", "tam", "action"])
def test_converted_model_reproduces_the_official_forward(source):
    sd = official_state_dict(source, seed=1)
    state_dict, cfg = convert_state_dict(sd, source=source, num_segments=8)
    model = build_model(cfg).eval()
    model.load_state_dict(state_dict, strict=True)
    x = video(n=2, size=64, t=8, seed=3)
    with torch.no_grad():
        ours = model(x)
    official = _official_forward(source, sd, x, 8)
    assert official.std() > 1e-2  # logits that differ between classes and videos
    assert (ours - official).abs().max() <= 1e-4


def test_conversion_rejects_wrong_source_wrong_t_and_other_architectures():
    tam = official_state_dict("tam")
    with pytest.raises(ValueError, match="looks like a TAM checkpoint"):
        convert_state_dict(tam, source="tsm", num_segments=8)
    with pytest.raises(ValueError, match="T=8 segments, not 16"):
        convert_state_dict(tam, source="tam", num_segments=16)
    tsm = {k: v for k, v in official_state_dict("tsm").items() if ".layer3.5." not in k}
    with pytest.raises(ValueError, match="match no supported ResNet"):
        convert_state_dict(tsm, source="tsm", num_segments=8)
    with pytest.raises(ValueError, match="unknown source"):
        convert_state_dict(tam, source="tsn", num_segments=8)
    with pytest.raises(ValueError, match="--source tdn, but this checkpoint looks like a TAM checkpoint"):
        convert_state_dict(tam, source="tdn", num_segments=8)


# ----------------------------------------------------------------------------- summary
def test_resnet50_tsn_params_and_macs_match_the_papers():
    m = build_model({"arch": "resnet50", "num_classes": 174, "num_segments": 8})
    assert count_params(m) == 23_508_032 + 2048 * 174 + 174  # torchvision trunk + new_fc
    macs = count_macs(m, torch.randn(1, 8, 3, 224, 224))
    assert 32.6e9 < macs < 32.8e9  # TSN/TSM ResNet-50 8 frames: 33 GFLOPs in the TSM paper
    assert model_summary(m).macs_per_clip == macs
