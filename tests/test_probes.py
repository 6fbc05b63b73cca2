"""Layer probes on toy features whose answer is known: which layer holds the label, and how much."""

import math

import pytest
import torch

from kd.probes import LayerProbes, ProbeSettings, layer_weights, probe_loss, probe_quality, train_probes

HIDDEN = 8




def layered_features(n: int, seed: int):
    """(N, 3, H) features and labels: layer 0 is noise, layer 1 carries a weak signal, layer 2 a clean margin."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    sign = (2 * labels - 1).float()  # (N,) in {-1, +1}
    features = torch.randn(n, 3, HIDDEN, generator=generator)
    features[:, 1, 0] += 0.5 * sign  # overlapping classes: about 70% separable
    features[:, 2, 0] += 4.0 * sign  # margin of 8 standard deviations of the noise
    return features, labels


@pytest.fixture(scope="module")
def classification():
    train_features, train_labels = layered_features(512, seed=0)
    dev_features, dev_labels = layered_features(256, seed=1)
    probes = train_probes(train_features, train_labels, 2, False)
    return probes, probe_quality(probes, dev_features, dev_labels, False), train_features


def test_probe_accuracy_follows_the_information_in_each_layer(classification):
    _, quality, _ = classification
    noise, weak, clean = quality["accuracy"]
    assert clean >= 0.99
    assert 0.35 <= noise <= 0.65
    assert 0.6 <= weak <= 0.85
    assert len(quality["loss"]) == 3


def test_layer_weights_rank_the_clean_layer_highest(classification):
    _, quality, _ = classification
    weights = layer_weights(quality["loss"])
    assert weights.shape == (3,)
    assert weights.sum().item() == pytest.approx(1.0)
    assert weights.argmax().item() == 2
    assert weights[2] > weights[1] > weights[0]


def test_layer_weights_are_a_softmax_of_negative_losses():
    # Golden values: losses (0, ln 2) give weights (2/3, 1/3); temperature 2 halves the gap before the softmax.
    assert layer_weights([0.0, math.log(2)]).tolist() == pytest.approx([2 / 3, 1 / 3])
    hot = layer_weights([0.0, 1.0], temperature=2.0).tolist()
    assert hot == pytest.approx([1 / (1 + math.exp(-0.5)), math.exp(-0.5) / (1 + math.exp(-0.5))])


def test_trained_probes_are_frozen_and_standardise_with_train_statistics(classification):
    probes, _, train_features = classification
    assert not probes.training
    assert all(not p.requires_grad for p in probes.parameters())
    assert torch.allclose(probes.mean, train_features.mean(0), atol=1e-6)
    assert torch.allclose(probes.std, train_features.std(0), atol=1e-6)
    assert probes(train_features).shape == (512, 3, 2)


def test_regression_probes_fit_a_linear_target():
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(HIDDEN, generator=generator)

    def make(n):
        features = torch.randn(n, 3, HIDDEN, generator=generator)
        return features, features[:, 2] @ weight + 0.5  # the target is linear in layer 2 only

    (train_features, train_target), (dev_features, dev_target) = make(512), make(256)
    probes = train_probes(train_features, train_target, 1, True, ProbeSettings(epochs=40, lr=0.05))
    quality = probe_quality(probes, dev_features, dev_target, True)
    assert "accuracy" not in quality
    noise_mse, _, linear_mse = quality["loss"]
    variance = dev_target.var().item()
    assert linear_mse < 0.02 * variance
    assert noise_mse > 0.8 * variance
    assert probes(dev_features).shape == (256, 3, 1)


def test_probe_loss_is_per_layer():
    # Layer 0 puts all its mass on the right class, layer 1 on the wrong one, layer 2 is uniform.
    labels = torch.tensor([0, 1, 1])
    right = torch.nn.functional.one_hot(labels, 2).float() * 20  # (N, C)
    logits = torch.stack([right, 20 - right, torch.zeros(3, 2)], 1)  # (N, 3, C)
    loss = probe_loss(logits, labels, regression=False)
    assert loss.shape == (3,)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-6)
    assert loss[1].item() == pytest.approx(20.0, abs=1e-6)
    assert loss[2].item() == pytest.approx(math.log(2))

    target = torch.tensor([1.0, 2.0])
    outputs = torch.tensor([[[1.0], [0.0]], [[2.0], [4.0]]])  # (N=2, L=2, 1)
    assert probe_loss(outputs, target, regression=True).tolist() == pytest.approx([0.0, 2.5])


def test_layer_probes_apply_each_layer_its_own_classifier():
    probes = LayerProbes(2, 3, 2)
    with torch.no_grad():
        probes.weight.zero_()
        probes.weight[1, 0, 1] = 1.0  # only layer 1, feature 0 -> class 1
        probes.bias.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    features = torch.tensor([[[5.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])  # (N=1, L=2, H=3)
    assert probes(features).tolist() == [[[1.0, 0.0], [0.0, 2.0]]]
