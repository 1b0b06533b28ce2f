"""Pruning (Eq. 6) is a training-time augmentation whose ratio SLIF-MR owns (``model.prune_ratio``):
evaluation and the self-loop see the whole graphs."""

import pytest
import torch

from slifmr.data.datamodule import RecDataModule
from slifmr.models.slifmr import SLIFMR


def _setup(shared_data, tmp_path):
    dm = RecDataModule(name="tiny", path=str(shared_data / "ml-100k-kg-tiny"), kcore=0,
                       cache_dir=str(tmp_path / "c"))
    dm.setup()
    torch.manual_seed(0)
    model = SLIFMR(dm.meta, embedding_dim=8, prune_ratio=0.5)
    model.attach(dm.graphs)
    return dm, model


def _items_at_epochs_0_and_1(dm, model):
    with torch.no_grad():
        a = model.embeddings()[1]
        dm.graphs.set_epoch(1)
        return a, model.embeddings()[1]


def test_eval_embeddings_do_not_depend_on_the_pruning_sample(shared_data, tmp_path):
    dm, model = _setup(shared_data, tmp_path)
    model.eval()
    a, b = _items_at_epochs_0_and_1(dm, model)
    torch.testing.assert_close(a, b)
    items = model.item_representations()
    torch.testing.assert_close(items, b)


def test_training_embeddings_use_the_epoch_sample(shared_data, tmp_path):
    dm, model = _setup(shared_data, tmp_path)
    model.train()
    a, b = _items_at_epochs_0_and_1(dm, model)
    assert not torch.allclose(a, b)
    assert model.training  # item_representations restores the mode it found
    model.item_representations()
    assert model.training


@pytest.mark.parametrize(("model_ratio", "resampled"), [(0.5, True), (0.0, False)])
def test_model_prune_ratio_decides_the_training_graphs(shared_data, tmp_path, model_ratio, resampled):
    dm = RecDataModule(name="tiny", path=str(shared_data / "ml-100k-kg-tiny"), kcore=0, cache_dir=str(tmp_path / "c"))
    dm.setup()
    torch.manual_seed(0)
    model = SLIFMR(dm.meta, embedding_dim=8, prune_ratio=model_ratio)
    model.attach(dm.graphs)
    model.train()
    a, b = _items_at_epochs_0_and_1(dm, model)
    assert (not torch.allclose(a, b)) == resampled
    seen = {}
    real = dm.graphs.interaction_adj

    def spy(device="cpu", prune=True, ratio=0.0, stream="interaction"):
        seen["ratio"], seen["stream"] = ratio, stream
        return real(device, prune=prune, ratio=ratio, stream=stream)

    dm.graphs.interaction_adj = spy
    model.views()
    assert seen == {"ratio": model_ratio, "stream": "interaction"}


def test_prune_ratio_out_of_range_is_refused(shared_data, tmp_path):
    dm, _ = _setup(shared_data, tmp_path)
    for bad in (1.0, -0.1, None):
        with pytest.raises(ValueError, match="prune_ratio"):
            SLIFMR(dm.meta, embedding_dim=8, prune_ratio=bad)
