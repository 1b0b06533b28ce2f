"""No file is unpickled: a checkpoint carrying code is refused before the code can run, and an
empty, garbage, truncated or foreign checkpoint is an error naming the file. A checkpoint knows
its data: evaluating or resuming it on another split is refused, naming both."""

from __future__ import annotations

import builtins
import io

import pytest
import torch

from hydra_compose import make_cfg
from slifmr.checkpoints import AtomicCheckpointIO, CheckpointError, read_checkpoint, stored_fingerprint
from slifmr.evaluate import evaluate
from slifmr.train import train

DATA = ["dataset=ml-100k-kg-tiny", "model=mf"]
FAST = ["trainer.max_epochs=1", "callbacks.progress_bar=null"]


class Payload:
    """Unpickling this creates ``marker``: the stand-in for ``os.system`` in a crafted file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _plain_ckpt() -> dict:
    return {"state_dict": {"user_emb.weight": torch.zeros(2, 2)}, "slifmr_model_class": "slifmr.models.mf.MF",
            "hyper_parameters": {"meta": {"n_users": 2, "n_items": 2}}}


def test_crafted_checkpoint_runs_nothing(tmp_path, shared_data):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({**_plain_ckpt(), "payload": Payload(str(marker))}, crafted)
    common = DATA + [f"paths.data_dir={shared_data}", f"ckpt_path={crafted}"]
    with pytest.raises(CheckpointError, match="refused to load") as e:
        evaluate(make_cfg(tmp_path / "e", common, config_name="eval"))
    assert str(crafted) in str(e.value)
    with pytest.raises(CheckpointError, match="refused to load") as e:
        train(make_cfg(tmp_path / "t", common + FAST))
    assert str(crafted) in str(e.value)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # the payload is live: an unsafe load would have run it
    assert marker.exists()


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"\x00garbage\xff" * 10, "not a readable checkpoint"),
    ("truncated", "not a readable checkpoint"),
    ({"a": torch.ones(2)}, "not a Lightning checkpoint"),
    ({"state_dict": {}, "epoch": 1}, "not a slifmr checkpoint"),
])
def test_broken_checkpoints_are_named_errors(tmp_path, content, words):
    path = tmp_path / "x.ckpt"
    if content == "truncated":
        buf = io.BytesIO()
        torch.save(_plain_ckpt(), buf)
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    if isinstance(content, dict):
        torch.save(content, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)


def test_atomic_checkpoint_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint(_plain_ckpt(), path)
    before = path.read_bytes()

    def killed(*a, **k):
        raise KeyboardInterrupt  # the write is interrupted after the temporary file was written

    monkeypatch.setattr("os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        io_.save_checkpoint({**_plain_ckpt(), "epoch": 5}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_on_another_split_is_refused(tmp_path, shared_data):
    common = DATA + [f"paths.data_dir={shared_data}"]
    train(make_cfg(tmp_path, common + FAST))
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    fp = stored_fingerprint(read_checkpoint(best))
    assert fp["dataset"] == "ml-100k-kg-tiny" and fp["split_seed"] == 2025 and len(fp["key"]) == 32
    # same data, same split: accepted
    evaluate(make_cfg(tmp_path / "ok", common + [f"ckpt_path={best}"], config_name="eval"))
    # another split of the same files: refused, naming both
    with pytest.raises(CheckpointError) as e:
        evaluate(make_cfg(tmp_path / "e", common + [f"ckpt_path={best}", "dataset.split_seed=1"],
                          config_name="eval"))
    msg = str(e.value)
    assert str(best) in msg and "split_seed=2025" in msg and "split_seed=1" in msg
    # starting a new run from it: accepted on the same data (its checkpoint directory differs), refused on another split
    train(make_cfg(tmp_path / "same", common + FAST + [f"ckpt_path={best}", "trainer.max_epochs=2"]))
    with pytest.raises(CheckpointError, match="split_seed") as e:
        train(make_cfg(tmp_path / "r", common + FAST + [f"ckpt_path={best}", "dataset.split_seed=1"]))
    # ... also when the run's config is not compared (the data check is the datamodule's own)
    with pytest.raises(CheckpointError, match="split_seed=1"):
        cfg = make_cfg(tmp_path / "r2", common + ["dataset.split_seed=1"])
        import hydra

        dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
        dm.setup("fit")
        state = read_checkpoint(best)["RecDataModule"]
        dm.load_state_dict(state)
