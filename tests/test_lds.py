"""The linear datamodeling score (issue 21's first part): against scipy's Spearman, a datamodel with a known answer, an
interval that comes from the subsets, and retrained outputs equal to fine-tuning each subset by hand."""
import numpy as np, pytest, torch
from scipy import stats
from conftest import make_tiny_model
from test_subnetworks import make_ds
from modtrace.finetune import finetune, predict
from modtrace.methods import lds, retrained_outputs, subset_draws
torch.set_num_threads(1)

def test_subsets_keep_alpha_of_the_examples_and_differ():
    S = subset_draws(50, 10, alpha=0.3, seed=1)
    assert S.shape == (10, 50) and (S.sum(1) == 15).all() and len({r.tobytes() for r in S}) == 10
    assert (subset_draws(50, 10, alpha=0.3, seed=1) == S).all()
    with pytest.raises(ValueError, match='alpha must lie in'): subset_draws(50, 10, alpha=1)
    with pytest.raises(ValueError, match='at least 2'): subset_draws(50, 1)

def test_lds_is_the_mean_of_scipys_spearman_per_test_example():
    rng = np.random.default_rng(3)
    scores, S = rng.normal(size=(7, 40)), subset_draws(40, 12, seed=3)
    outputs = rng.normal(size=(12, 7))
    pred = S.astype(float) @ scores.T
    by_hand = np.mean([stats.spearmanr(pred[:, z], outputs[:, z]).statistic for z in range(7)])
    assert lds(scores, S, outputs, n_boot=10)['lds'] == pytest.approx(by_hand, abs=1e-12)

def test_a_true_datamodel_scores_near_one_and_noise_near_zero_with_an_interval_over_subsets():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(40, 300))
    S = subset_draws(300, 64)
    f = S.astype(float) @ W.T + rng.normal(scale=0.5, size=(64, 40))
    good, noise = lds(W, S, f, n_boot=300), lds(rng.normal(size=W.shape), S, f, n_boot=300)
    assert good['lds'] > 0.95 and good['lo'] > 0.9 and good['ci_over'] == 'subsets'
    assert abs(noise['lds']) < 0.1 and noise['lo'] < 0 < noise['hi']

def test_the_interval_resamples_subsets_not_test_examples():
    "When the retrained outputs share a component across test examples (as real retrainings do: one model per subset), the"
    " per-example LDS move together: a bootstrap over test examples is far too narrow; the one over subsets is not."
    rng = np.random.default_rng(1)
    c, S = rng.normal(size=300), subset_draws(300, 16, seed=1)
    W = c + 0.05 * rng.normal(size=(40, 300))                                  # every test example leans on the same examples
    common = S.astype(float) @ c
    shared = common.std() * rng.normal(size=16)                                # one error per retrained model, for every z
    f = (common + shared)[:, None] + 0.01 * rng.normal(size=(16, 40))
    got = lds(W, S, f, n_boot=500)
    per_z = np.array([stats.spearmanr(S.astype(float) @ W[z], f[:, z]).statistic for z in range(40)])
    over_z = [per_z[rng.integers(0, 40, 40)].mean() for _ in range(500)]
    width_z = np.subtract(*np.quantile(over_z, [0.975, 0.025]))
    assert got['lds'] == pytest.approx(per_z.mean(), abs=1e-12)
    assert got['hi'] - got['lo'] > 5 * width_z, (got, width_z)

def test_retrained_outputs_are_minus_the_test_loss_of_fine_tuning_each_subset_alone(tmp_path):
    ds = make_ds(24, labels=[i % 2 for i in range(24)])
    splits = {'train': ds.select(range(16)), 'test': ds.select(range(16, 24))}
    S = subset_draws(16, 3, seed=2)
    settings = dict(lr=1e-2, epochs=1, batch_size=4, seed=0)
    got = retrained_outputs(make_tiny_model, splits, S, tmp_path/'lds', **settings)
    assert got.shape == (3, 8)
    run = finetune(make_tiny_model(), None, {'train': splits['train'].select(np.flatnonzero(S[1]))}, tmp_path/'by-hand',
                   progress=False, **settings)
    np.testing.assert_allclose(got[1], -predict(run.model, splits['test'], progress=False)['loss'].to_numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(got[0], got[1])                                   # other subsets, other models
    np.testing.assert_array_equal(retrained_outputs(make_tiny_model, splits, S, tmp_path/'lds', **settings), got)   # reused, not retrained
