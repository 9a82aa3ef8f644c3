"""The backbone table and its protocol, the one placement, and the sites beyond per-block slots
(a module in place of a bottleneck's conv + BN, a module in place of the stem and first stage)."""

from __future__ import annotations

import pytest
import torch
import toy_backbone
from torch import nn

from videoattn.attention import registry
from videoattn.errors import ConfigError
from videoattn.models import build_model, load_pretrained
from videoattn.models.backbones import BACKBONES, Backbone, get_backbone
from videoattn.models.placement import ONE_PER_SITE

T = 4
TINY = {"layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128]}


def model_cfg(arch="resnet50", inserts=(), **kw):
    options = TINY if "options" not in kw and "layers" in get_backbone(arch).options else {}
    kw.pop("options", None)
    return {"arch": arch, "num_classes": 3, "num_segments": T, "inserts": list(inserts), **options, **kw}


def clips(n=2, c=3, size=64, seed=0):
    return torch.randn(n, T, c, size, size, generator=torch.Generator().manual_seed(seed))  # (N, T, C, H, W)


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_every_backbone_follows_the_protocol_and_offers_its_row_sites(arch):
    torch.manual_seed(0)
    model = build_model(model_cfg(arch)).eval()
    backbone, row = model.backbone, BACKBONES[arch]
    assert isinstance(backbone, Backbone)
    assert {s.slot for s in backbone.sites} == set(row.slots)  # the row says what the backbone offers
    assert all(s.layout for s in backbone.sites) and all(s.channels >= 1 for s in backbone.sites)
    x = clips().flatten(0, 1)  # (N*T, 3, 64, 64)
    with torch.no_grad():
        y = backbone(x)
        z = backbone.stem(x)
        for stage in backbone.stages:
            z = stage(z)
    assert y.shape == (2 * T, backbone.num_features, 2, 2)  # /32
    torch.testing.assert_close(y, z, rtol=0, atol=0)  # forward = the stages on the stem


def test_resnet50_tada_has_no_stem_pool_and_strides_its_first_stage_with_resnet50s_weights():
    torch.manual_seed(0)
    tada = build_model(model_cfg("resnet50_tada")).backbone.eval()
    plain = build_model(model_cfg("resnet50")).backbone.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert tada.stem(x).shape[-2:] == (32, 32) and plain.stem(x).shape[-2:] == (16, 16)  # no max-pool: /2
        assert tada.layer1(tada.stem(x)).shape[-2:] == (16, 16)  # stage 1 strides: /4 as torchvision's
        assert tada(x).shape == plain(x).shape == (2, 512, 2, 2)
    assert tada.layer1[0].conv2.stride == (2, 2) and tada.layer1[0].downsample[0].stride == (2, 2)
    assert {k: v.shape for k, v in tada.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert get_backbone("resnet50_tada").weights == get_backbone("resnet50").weights


def test_unknown_arch_and_options_a_backbone_does_not_take_are_one_line():
    with pytest.raises(ConfigError, match=r"model.arch='resnet5': expected one of resnet18, .*mobilenet_v2"):
        build_model(model_cfg("resnet5", options=None))
    with pytest.raises(ConfigError, match="model.layers does not apply to the mobilenet_v2 backbone"):
        build_model(model_cfg("mobilenet_v2", layers=[1, 1, 1, 1]))


def test_a_toy_backbone_is_one_file_and_one_row_and_trains_with_a_temporal_module(monkeypatch):
    monkeypatch.setitem(BACKBONES, "toy", toy_backbone.ROW)  # the row, for this test only
    torch.manual_seed(0)
    model = build_model(model_cfg("toy", ["tsm", {"name": "se", "stages": [4]}])).train()
    shifts = [n for n, _ in model.named_modules() if n.endswith("att_input.tsm")]
    assert shifts == [f"backbone.layers.{i}.1.att_input.tsm" for i in range(4)]
    assert [n for n, _ in model.named_modules() if n.endswith(".se")] == ["backbone.layers.3.1.att_output.se"]
    assert model.backbone.layers[0][1].att_input.tsm.num_segments == T
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, logits = model(clips(), torch.tensor([0, 2]))
    loss.backward()
    opt.step()
    assert logits.shape == (2, 3) and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith("backbone.conv1"))
    with pytest.raises(ConfigError, match="toy offers the slots / sites \\('input', 'output'\\), not 'after_conv1'"):
        build_model(model_cfg("toy", ["tam"]))
    with pytest.raises(ConfigError, match="the toy backbone has no ImageNet weights"):
        build_model(model_cfg("toy", pretrained="imagenet"))
    monkeypatch.delitem(BACKBONES, "toy")
    with pytest.raises(ConfigError, match="model.arch='toy'"):
        build_model({**model_cfg("resnet50"), "arch": "toy"})


# ----------------------------------------------------------------------------- conv site
class PlainConv(nn.Conv2d):
    """A conv-site module that is a plain 3x3 conv + BN, its kernel ``weight`` and BN ``bn`` (the
    TAda module's names)."""

    def __init__(self, in_channels, out_channels, *, stride, num_segments):
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.num_segments = num_segments

    def forward(self, x):
        return self.bn(super().forward(x))  # (N*T, Cin, H, W) -> (N*T, Cout, H/s, W/s)


CONV_ROW = registry._spec(
    "plainconv", PlainConv, False, "conv", "p", None, "v", scope="conv", pretrained_map={"conv.": "", "bn.": "bn."}
)


def test_a_conv_module_replaces_conv2_and_bn2_and_takes_their_imagenet_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "plainconv": CONV_ROW})
    torch.manual_seed(0)
    plain = build_model(model_cfg()).eval()
    for m in plain.modules():  # statistics away from the init, so that the equality below means something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    path = tmp_path / "imagenet.pth"  # a torchvision-format state_dict, its 1000-class fc included
    torch.save({**plain.backbone.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    model = build_model(model_cfg(inserts=["plainconv", "se"], pretrained=str(path))).eval()
    keys = model.backbone.state_dict()
    assert "layer1.0.conv2.weight" not in keys and "layer1.0.bn2.running_mean" not in keys
    assert keys["layer2.0.att_conv.plainconv.weight"].shape == (32, 32, 3, 3)
    assert model.backbone.layer2[0].att_conv.plainconv.stride == (2, 2)  # the replaced conv's stride
    report = model.pretrained_report
    assert any("conv modules replace" in note for note in report.notes), report.summary()
    assert all(".se." in k or k.startswith("fc.") for k in report.not_initialised), report.not_initialised
    replaced = plain.backbone.layer3[0].bn2.running_var
    torch.testing.assert_close(keys["layer3.0.att_conv.plainconv.bn.running_var"], replaced)
    x = clips().flatten(0, 1)  # (N*T, 3, 64, 64)
    with torch.no_grad():
        for block in model.backbone.layer1, model.backbone.layer2, model.backbone.layer3, model.backbone.layer4:
            block[0].att_output = None  # the SE gates aside: the rest is the plain network
        torch.testing.assert_close(model.backbone(x), plain.backbone(x), rtol=0, atol=0)
    # ... and a model built with the module loads the same file again: the report is the same
    again = build_model(model_cfg(inserts=["plainconv"]))
    assert load_pretrained(again, path).not_initialised == ["fc.weight", "fc.bias"]


def test_conv_site_errors(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "plainconv": CONV_ROW})
    with pytest.raises(ConfigError, match=r"resnet18 offers .*not 'conv' \(plainconv\)"):
        build_model(model_cfg("resnet18", ["plainconv"]))
    with pytest.raises(ConfigError, match="two inserts replace the conv of layer1.0"):
        build_model(model_cfg(inserts=["plainconv", "plainconv"]))
    with pytest.raises(ConfigError, match="'plainconv' sits at the 'conv' site"):
        build_model(model_cfg(inserts=[{"name": "plainconv", "slot": "input"}]))
    with pytest.raises(ConfigError, match="'se' is not a module for the 'conv' site"):
        build_model(model_cfg(inserts=[{"name": "se", "slot": "conv"}]))
    assert "conv" in ONE_PER_SITE and "stem" in ONE_PER_SITE


# ----------------------------------------------------------------------------- stem site
class DiffStem(nn.Module):
    """A stem-site module on 2 frames per segment: the first frame through the backbone's stem and
    first stage, plus a gated branch (gate 0 at init) on the frame difference through its own copy
    of the first stage (a toy of TDN's short-term module)."""

    def __init__(self, *, channels, num_segments, stage, gate=0.0):
        super().__init__()
        self.channels, self.num_segments = channels, num_segments
        self.branch = stage  # the fresh plain copy the backbone built: this module's own
        self.gate = nn.Parameter(torch.tensor(float(gate)))

    def forward(self, x, *, stem, stage):
        rgb, diff = x[:, :3], x[:, 3:6] - x[:, :3]  # (N*T, 6, H, W) -> 2 x (N*T, 3, H, W)
        return stage(stem(rgb)) + self.gate * self.branch(stem(diff))


STEM_ROW = registry._spec("diffstem", DiffStem, True, "stem", "p", None, "v", scope="stem", frames_per_segment=2)


def test_a_stem_module_gets_the_stem_the_first_stage_and_its_own_plain_copy(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "diffstem": STEM_ROW})
    torch.manual_seed(0)
    model = build_model(model_cfg(inserts=["diffstem", "tsm"]))
    plain = build_model(model_cfg(inserts=["tsm"]))
    assert model.frames_per_segment == 2 and plain.frames_per_segment == 1
    stem_module = model.backbone.att_stem.diffstem
    assert stem_module.channels == 16 and stem_module.num_segments == T
    assert stem_module.branch is not model.backbone.layer1
    assert all(b.att_input is None for b in stem_module.branch)  # plain: no inserts in the copy
    assert model.backbone.layer1[0].att_input is not None  # ... while the backbone's stage 1 has them
    assert "att_stem.diffstem.branch.0.conv1.weight" in model.backbone.state_dict()
    x = clips(c=6)  # (N, T, 2*3, H, W): 2 frames per segment on the channels
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("backbone.att_stem.") for k in missing)
    with torch.no_grad():  # gate 0: the plain model on the first frame of each segment
        torch.testing.assert_close(model.eval()(x), plain.eval()(x[:, :, :3]), rtol=0, atol=0)
    loss, _ = model.train()(x, torch.tensor([0, 1]))
    loss.backward()
    assert stem_module.gate.grad is not None and stem_module.gate.grad != 0  # the branch is in the graph
    with pytest.raises(ValueError, match="2 frames per segment"):
        model(clips())


def test_site_protocols_are_checked_when_the_table_is_built():
    class NoStage(nn.Module):
        def __init__(self, *, channels, num_segments):
            super().__init__()

        def forward(self, x, *, stem, stage):
            return x

    class NoStemArgs(DiffStem):
        def forward(self, x):
            return x

    class OneChannelArg(nn.Module):
        def __init__(self, channels, *, num_segments):
            super().__init__()

    with pytest.raises(TypeError, match="stem module is built as"):
        registry._spec("bad", NoStage, True, "stem", "p", None, "v", scope="stem")
    with pytest.raises(TypeError, match="stem module is called as"):
        registry._spec("bad", NoStemArgs, True, "stem", "p", None, "v", scope="stem")
    with pytest.raises(TypeError, match="conv-site module is built as"):
        registry._spec("bad", OneChannelArg, True, "conv", "p", None, "v", scope="conv")
    with pytest.raises(TypeError, match="only a stem module"):
        registry._spec("bad", OneChannelArg, True, "input", "p", None, "v", frames_per_segment=5)
    with pytest.raises(TypeError, match="pretrained_map is for conv modules"):
        registry._spec("bad", OneChannelArg, True, "input", "p", None, "v", pretrained_map={"conv.": ""})
    with pytest.raises(TypeError, match="stem modules, and only they"):
        registry._spec("bad", DiffStem, True, "input", "p", None, "v", scope="stem")


def copy_first_stage(module, state_dict):
    """A row's ``pretrained_init``: the stem module's branch starts from the pretrained stage 1."""
    mine = {k.removeprefix("layer1."): v for k, v in state_dict.items() if k.startswith("layer1.")}
    module.branch.load_state_dict(mine)
    return [f"branch.{k}" for k in mine]


def test_a_stem_row_sets_its_module_from_the_pretrained_backbone(monkeypatch, tmp_path):
    row = registry._spec(
        "diffstem", DiffStem, True, "stem", "p", None, "v", scope="stem", frames_per_segment=2,
        pretrained_init=copy_first_stage,
    )  # fmt: skip
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "diffstem": row})
    torch.manual_seed(0)
    plain = build_model(model_cfg()).backbone
    torch.save(plain.state_dict(), tmp_path / "imagenet.pth")
    model = build_model(model_cfg(inserts=["diffstem"], pretrained=str(tmp_path / "imagenet.pth")))
    branch = model.backbone.att_stem.diffstem.branch
    for key, value in plain.layer1.state_dict().items():
        torch.testing.assert_close(branch.state_dict()[key], value, rtol=0, atol=0)
    report = model.pretrained_report
    assert report.not_initialised == ["backbone.att_stem.diffstem.gate", "fc.weight", "fc.bias"]
    assert any("set from these weights" in n for n in report.notes)
    with pytest.raises(TypeError, match="pretrained_init is for conv and stem modules"):
        registry._spec("bad", PlainConv, True, "input", "p", None, "v", pretrained_init=copy_first_stage)
