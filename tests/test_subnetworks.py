"Tests of modtrace.subnetworks: importance (Eq. 1), pruning, derived masks, statistics, figures, bad input."
import json
import numpy as np, pytest, torch
from datasets import Dataset
from conftest import make_tiny_model
from modtrace.model import ModelError
from modtrace.units import head_gate
from modtrace.subnetworks import (importance, prune, find_subnetworks, save_subnetworks, load_subnetworks,
                                  random_masks, suboptimal_masks, mask_union, mask_intersection, heads_disabled,
                                  head_usage, shared_heads, mask_similarity)
from modtrace.figures import mask_figures
torch.set_num_threads(1)

def make_ds(n=12, seed=0, langs=('en', 'fr'), labels=None, vocab=60):
    g = torch.Generator().manual_seed(seed)
    ids = [[0] + torch.randint(5, vocab, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist() + [2]
           for _ in range(n)]
    lab = labels if labels is not None else torch.randint(0, 2, (n,), generator=g).tolist()
    return Dataset.from_dict({'id': [str(i) for i in range(n)], 'lang': [langs[i * len(langs) // n] for i in range(n)],
                              'input_ids': ids, 'attention_mask': [[1] * len(x) for x in ids], 'label': lab})

def own_labels(model, ds):
    "Relabel with the model's own predictions: the unpruned accuracy is 1."
    from modtrace.finetune import predict
    p = predict(model, ds, progress=False)
    return ds.remove_columns('label').add_column('label', p['pred'].astype(int).tolist())

def test_multiple_of_14_and_monotone():
    model = make_tiny_model(layers=12, heads=12, hidden=24)
    ds = own_labels(model, make_ds(8))
    m, traj = prune(model, ds, threshold=0.3, batch_size=8)
    nd = [t['n_disabled'] for t in traj]
    assert all(n % 14 == 0 for n in nd) and int((m == 0).sum()) % 14 == 0
    assert nd == sorted(nd) and len(set(nd)) == len(nd)
    assert all(t['kept'] for t in traj[:-1])
    assert int((m == 0).sum()) == max(t['n_disabled'] for t in traj if t['kept'])

def planted():
    "2x4 model: heads (0,1),(1,2) useless (W_O columns zeroed); head (1,0) essential (W_O columns scaled up)."
    model = make_tiny_model(layers=2, heads=4, hidden=16)
    d = 4
    with torch.no_grad():
        for l, h in [(0, 1), (1, 2)]: model.roberta.encoder.layer[l].attention.output.dense.weight[:, h*d:(h+1)*d] = 0
        model.roberta.encoder.layer[1].attention.output.dense.weight[:, 0:d] *= 30
    return model

def test_planted_useless_first_essential_never():
    model = planted()
    ds = own_labels(model, make_ds(16))
    s = importance(model, ds, normalize=False)
    assert s[0, 1] == 0 and s[1, 2] == 0
    m, traj = prune(model, ds, fraction=0.25, threshold=0.5)
    first = torch.zeros(2, 4); first.view(-1)[torch.tensor(traj[1]['scores']).flatten().argsort()[:2]] = 1
    assert first[0, 1] == 1 and first[1, 2] == 1                       # useless heads go in round 1
    assert m[1, 0] == 1                                                 # essential head kept
    xi = torch.ones(2, 4)
    for t in traj[1:]:                                                  # ... and never chosen, even in the failing round
        sc = torch.tensor(t['scores']).masked_fill(xi == 0, float('inf')).flatten()
        gone = sc.argsort()[:2]; assert 4 not in gone.tolist()
        xi.view(-1)[gone] = 0

def _batches(model, ds, bs=64):
    from modtrace.batching import example_loader
    for b in example_loader(ds, model.config.pad_token_id, bs): b.pop('lang_id'); yield b

def per_example_losses(model, ds, xi):
    out = []
    with torch.no_grad(), head_gate(model, xi):
        for b in _batches(model, ds):
            lab = b.pop('labels')
            out.append(torch.nn.functional.cross_entropy(model(**b).logits, lab, reduction='none'))
    return torch.cat(out)

def test_importance_equals_finite_differences():
    model = make_tiny_model(layers=2, heads=4, hidden=16, dtype=torch.float64)
    ds = make_ds(6)
    xi = torch.ones(2, 4, dtype=torch.float64); xi[0, 3] = 0
    s = importance(model, ds, xi, normalize=False, batch_size=4)
    eps, fd = 1e-5, torch.zeros(2, 4, dtype=torch.float64)
    for l in range(2):
        for h in range(4):
            e = torch.zeros_like(xi); e[l, h] = eps
            fd[l, h] = ((per_example_losses(model, ds, xi + e) - per_example_losses(model, ds, xi - e)) / (2*eps)).abs().mean()
    torch.testing.assert_close(s.double(), fd, rtol=1e-4, atol=1e-6)
    # per-example |.| vs batch |.|: where signs disagree the batch gradient is smaller
    xb = xi.clone().requires_grad_(True)
    with head_gate(model, xb):
        b = next(_batches(model, ds)); lab = b.pop('labels')
        loss = torch.nn.functional.cross_entropy(model(**b).logits, lab)
    batch_abs = torch.autograd.grad(loss, xb)[0].abs()
    assert (s.double() - batch_abs > 1e-6).any()
    assert all(p.requires_grad for p in model.parameters())          # parameters restored

def test_importance_and_predictions_without_an_attention_mask_column_are_unchanged():
    "A split without `attention_mask` must not treat padding as tokens (it did: importance off by 77% at batch 32)."
    from modtrace.finetune import predict
    model, ds = make_tiny_model(dtype=torch.float64), make_ds(12)
    bare = ds.remove_columns('attention_mask')
    torch.testing.assert_close(importance(model, bare, batch_size=32), importance(model, ds, batch_size=32))
    a, b = predict(model, bare, progress=False), predict(model, ds, progress=False)
    assert (a['pred'] == b['pred']).all() and np.allclose(a['loss'], b['loss'], rtol=1e-10)

def test_normalized_rows():
    model = make_tiny_model()
    s = importance(model, make_ds(6))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(2))

def test_find_save_load(tmp_path):
    model = make_tiny_model()
    ds = make_ds(12)
    masks, trajs = find_subnetworks(model, ds, fraction=0.25, threshold=0.5)
    assert set(masks) == {'en', 'fr'} and trajs['en'][0]['round'] == 0
    p = save_subnetworks(tmp_path/'masks.json', masks, trajs, model='tiny')
    doc = json.loads(p.read_text())                                     # readable without modtrace
    assert doc['n_layers'] == 2 and doc['n_heads'] == 4 and set(doc['trajectories']) == {'en', 'fr'}
    m2, t2 = load_subnetworks(p, model)
    assert torch.equal(m2['fr'], masks['fr']) and t2 == json.loads(json.dumps(trajs))
    with pytest.raises(ModelError, match='this model has'): load_subnetworks(p, make_tiny_model(layers=3))

def test_derived_masks():
    a = torch.tensor([[1., 1, 0], [0, 1, 1]]); b = torch.tensor([[1., 0, 0], [1, 1, 0]])
    assert torch.equal(mask_union(a, b), torch.tensor([[1., 1, 0], [1, 1, 1]]))
    assert torch.equal(mask_intersection(a, b), torch.tensor([[1., 0, 0], [0, 1, 0]]))
    r = random_masks(a)
    assert set(r) == {0, 1, 2} and all(m.sum() == 4 for m in r.values())
    assert not all(torch.equal(m, a) for m in r.values())
    assert suboptimal_masks({'en': a, 'fr': b, 'de': b}, 'en') == {'fr': a, 'de': a}

def test_statistics_known_answers():
    mk = {'en': torch.tensor([[1., 1], [0, 1]]), 'fr': torch.tensor([[1., 0], [0, 1]]), 'de': torch.tensor([[0., 0], [0, 1]])}
    assert heads_disabled(mk)['n_disabled'].tolist() == [1, 2, 3]
    assert head_usage(mk)['n_langs'].tolist() == [2, 1, 0, 3]
    sh = shared_heads(mk).set_index(['lang_a', 'lang_b'])
    assert sh.loc[('en', 'fr'), 'shared'] == 2 and sh.loc[('en', 'en'), 'shared'] == 3
    assert np.isclose(sh.loc[('en', 'fr'), 'share'], 2/3) and np.isclose(sh.loc[('fr', 'en'), 'share'], 1.0)
    assert np.isclose(sh.loc[('en', 'de'), 'share'], 1/3) and np.isclose(sh.loc[('de', 'en'), 'share'], 1.0)
    sim = mask_similarity(mk).set_index(['lang_a', 'lang_b'])['cosine']
    assert np.isclose(sim[('en', 'fr')], 2/np.sqrt(6)) and np.isclose(sim[('en', 'en')], 1.0)
    pl = mask_similarity(mk, per_layer=True).set_index(['lang_a', 'lang_b', 'layer'])['cosine']
    assert np.isclose(pl[('en', 'fr', 0)], 1/np.sqrt(2)) and np.isclose(pl[('en', 'de', 1)], 1.0) and pl[('en', 'de', 0)] == 0

def test_figures_written(tmp_path):
    mk = {'en': torch.tensor([[1., 1], [0, 1]]), 'fr': torch.tensor([[1., 0], [0, 1]])}
    mask_figures(mk, tmp_path)
    for stem in ['fig11_head_usage', 'fig12_shared_heads', 'fig13_shared_heads_share', 'fig8_mask_cosine', 'fig9_mask_cosine_layers']:
        for ext in ('png', 'svg', 'csv'): assert (tmp_path/f'{stem}.{ext}').stat().st_size > 0
    assert (tmp_path/'table1_heads_disabled.csv').exists()

def test_bad_input():
    model, ds = make_tiny_model(), make_ds(6)
    with pytest.raises(ModelError, match='shape'): prune(model, ds, xi=torch.ones(3, 4))
    with pytest.raises(ModelError, match='shape'): importance(model, ds, xi=torch.ones(2, 5))
    with pytest.raises(ModelError, match='enables no head'): prune(model, ds, xi=torch.zeros(2, 4))
    for t in (0, -0.1, 1.01):
        with pytest.raises(ValueError, match='threshold'): prune(model, ds, threshold=t)
    with pytest.raises(ValueError, match='disable nothing'): prune(model, ds, fraction=0.05)

def test_stops_before_the_line():
    "A metric falling with every round: the returned mask is the last one at or above threshold x unpruned."
    model, ds = make_tiny_model(), make_ds(6)
    m, traj = prune(model, ds, fraction=0.25, threshold=0.6, metric=lambda mod, d, xi: float(xi.sum()) / 8)
    assert [(t['n_disabled'], t['kept']) for t in traj] == [(0, True), (2, True), (4, False)]
    assert int((m == 0).sum()) == 2 and traj[1]['scores'] is not None and traj[0]['scores'] is None
