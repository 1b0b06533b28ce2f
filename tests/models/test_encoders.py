import pytest
import torch

from slifmr.models.encoders.feature_graph import FeatureGraphEncoder
from slifmr.models.encoders.interaction import lightgcn_readout


def _graph():
    # 2 nodes joined by one edge, normalised: A = [[0, 1], [1, 0]]
    return torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse()


def test_residual_readout_hand_case():
    ego = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # layer 1 = A ego = [[0,2],[1,0]]; layer 2 = A^2 ego = ego
    out = lightgcn_readout(_graph(), ego, 2, "residual")
    expect = (torch.tensor([[0.0, 2.0], [1.0, 0.0]]) + ego) / 2 + ego  # mean(layers 1..2) + layer 0
    torch.testing.assert_close(out, expect)


def test_mean_readout_is_lightgcn():
    ego = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out = lightgcn_readout(_graph(), ego, 2, "mean")
    expect = (ego + torch.tensor([[0.0, 2.0], [1.0, 0.0]]) + ego) / 3  # mean(layers 0..2)
    torch.testing.assert_close(out, expect)
    with pytest.raises(ValueError, match="readout"):
        lightgcn_readout(_graph(), ego, 2, "max")


def test_feature_encoder_weights_modalities():
    enc = FeatureGraphEncoder(2, n_layers=1, readout="mean")
    with torch.no_grad():
        enc.modality_logits.copy_(torch.tensor([0.0, torch.log(torch.tensor(3.0))]))  # alpha = [1/4, 3/4]
    x0 = torch.tensor([[1.0], [2.0]])
    g1 = _graph()
    g2 = torch.eye(2).to_sparse()
    out = enc([g1, g2], x0)
    layer1 = 0.25 * torch.tensor([[2.0], [1.0]]) + 0.75 * x0
    torch.testing.assert_close(out, (layer1 + x0) / 2)
