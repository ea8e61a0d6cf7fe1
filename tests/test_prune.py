"""Pruning masks, the gradual schedule and sparse storage against their definitions."""

import warnings

import pytest
import torch

from tamenet.compress.prune import (csr_bytes, dense_bytes, from_storage, gradual_sparsity, magnitude_masks,
                                    pruned_count, random_masks, storage_bytes, to_storage)


def _weights(seed=0, shapes=((3, 8, 6), (3, 6, 4))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


def test_layer_wise_magnitude_removes_exactly_the_smallest_per_member():
    weights = _weights()
    s = torch.tensor([0.0, 0.5, 0.9])
    masks = magnitude_masks(weights, s, scope="layer")
    for w, mask in zip(weights, masks):
        n = w[0].numel()
        for m in range(3):
            k = int(s[m].item() * n + 1e-9)
            assert int((~mask[m]).sum()) == k
            if 0 < k < n:  # every removed weight is no larger than every kept one
                assert w[m].abs()[~mask[m]].max() <= w[m].abs()[mask[m]].min()


def test_global_magnitude_ranks_all_layers_together():
    small, large = torch.full((1, 10, 10), 0.01), torch.full((1, 10, 10), 1.0)
    small += torch.linspace(0, 1e-3, 100).reshape(1, 10, 10)
    masks = magnitude_masks([small, large], 0.5, scope="global")
    assert not masks[0].any() and masks[1].all()  # the small layer goes first
    layer = magnitude_masks([small, large], 0.5, scope="layer")
    assert layer[0].float().mean() == 0.5 and layer[1].float().mean() == 0.5


def test_a_member_mask_equals_its_separate_run():
    weights = _weights(1)
    s = torch.tensor([0.2, 0.8, 0.95])
    together = magnitude_masks(weights, s, scope="global")
    rand = random_masks(weights, s, seeds=[5, 6, 7])
    for m in range(3):
        alone = magnitude_masks([w[m:m + 1] for w in weights], s[m:m + 1], scope="global")
        alone_rand = random_masks([w[m:m + 1] for w in weights], s[m:m + 1], seeds=[5 + m])
        for a, b in zip(together, alone):
            assert torch.equal(a[m], b[0])
        for a, b in zip(rand, alone_rand):
            assert torch.equal(a[m], b[0])


def test_random_masks_depend_on_the_seed_not_the_weights():
    weights = _weights(2)
    a = random_masks(weights, 0.5, seeds=[1, 1, 2])
    b = random_masks([w * 100 for w in weights], 0.5, seeds=[1, 1, 2])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(a[0][0], a[0][1]) and not torch.equal(a[0][0], a[0][2])
    assert all(int((~x[m]).sum()) == x[m].numel() // 2 for x in a for m in range(3))


def test_gradual_schedule_is_zhu_and_gupta_cubic():
    kw = dict(final=0.9, start_step=10, steps=100)
    assert gradual_sparsity(0, **kw) == 0.0 and gradual_sparsity(10, **kw) == 0.0
    assert gradual_sparsity(110, **kw) == pytest.approx(0.9) and gradual_sparsity(500, **kw) == pytest.approx(0.9)
    assert gradual_sparsity(60, **kw) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    values = [gradual_sparsity(t, **kw) for t in range(10, 111, 10)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert steps == sorted(steps, reverse=True)  # fast first, slow at the end


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_0_1_is_refused(sparsity):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        pruned_count(torch.tensor(sparsity), 10)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        magnitude_masks(_weights(), sparsity)


def test_bad_scope_and_counts_are_refused():
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks(_weights(), 0.5, scope="row")
    with pytest.raises(ValueError, match="one sparsity per member"):
        magnitude_masks(_weights(), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="one seed per member"):
        random_masks(_weights(), 0.5, seeds=[1])


def test_csr_storage_round_trips_exactly_and_saves_bytes_only_when_sparse():
    w = _weights(3, shapes=((64, 32),))[0]
    sparse = w * magnitude_masks([w[None]], 0.9)[0][0]
    stored = to_storage(sparse)
    assert stored["format"] == "csr" and stored["col_indices"].dtype == torch.int32
    assert torch.equal(from_storage(stored), sparse)
    with warnings.catch_warnings():  # PyTorch's CSR is the reference layout (its sparse API warns "beta")
        warnings.simplefilter("ignore")
        reference = sparse.to_sparse_csr()
    assert torch.equal(stored["crow_indices"].long(), reference.crow_indices())
    assert torch.equal(stored["col_indices"].long(), reference.col_indices())
    assert torch.equal(stored["values"], reference.values())
    nonzero = int(torch.count_nonzero(sparse))
    assert storage_bytes(stored) == csr_bytes(64, nonzero, 4) < dense_bytes(sparse) / 4
    dense = to_storage(w)  # CSR would be larger: stays dense
    assert dense["format"] == "dense" and torch.equal(from_storage(dense), w)
    conv = torch.zeros(4, 3, 5, 5)
    conv[0, 1, 2, 3] = 7.0
    assert torch.equal(from_storage(to_storage(conv)), conv)
