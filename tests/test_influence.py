"TracIn scoring (modtrace.influence) against explicit gradients, the first-order check, top-m, refusals."
import numpy as np, pandas as pd, pytest, torch
from pathlib import Path
from datasets import Dataset
from modtrace.influence import influence, check_pairs
from modtrace.store import build_store, StoreError
from modtrace.sketch import explicit_grads, select_linears
from modtrace.finetune import model_columns, pad_collator

torch.set_num_threads(1)

def split(n, seed):
    rng = np.random.default_rng(seed)
    ids = [[0, *rng.integers(3, 60, rng.integers(2, 9)).tolist(), 2] for _ in range(n)]
    return Dataset.from_dict({'id': [f's{seed}-{i}' for i in range(n)], 'lang': (['xx', 'yy'] * n)[:n],
                              'label': rng.integers(0, 2, n).tolist(), 'input_ids': ids})

def as_batch(ds): return pad_collator(pad_token_id=1)([r for r in model_columns(ds)])

@pytest.fixture
def run(tiny_model, tmp_path):
    "Exact stores of 9 training and 4 test examples at two 'checkpoints', with explicit gradients."
    tr, te = split(9, 0), split(4, 1)
    models = [tiny_model(seed=e) for e in (1, 2)]
    kw = dict(exact=True, dtype='float32', progress=False, chunk_size=4)
    train = [build_store(mo, tr, tmp_path/f'tr{e}', checkpoint=f'ep{e}', **kw) for e, mo in enumerate(models)]
    test = [build_store(mo, te, tmp_path/f'te{e}', checkpoint=f'ep{e}', **kw) for e, mo in enumerate(models)]
    G = [(explicit_grads(mo, as_batch(te)), explicit_grads(mo, as_batch(tr))) for mo in models]
    return models, tr, te, train, test, G

def nrm(x): return torch.nn.functional.normalize(x, dim=1)

def test_exact_mode_equals_explicit_dots_and_cosines(run):
    *_, train, test, G = run
    for norm, f in [('cos', lambda a, b: nrm(a) @ nrm(b).T), ('dot', lambda a, b: a @ b.T), ('train', lambda a, b: a @ nrm(b).T)]:
        inf = influence(test, train, m=3, norm=norm, full=True, chunk_size=4, progress=False)
        per = torch.stack([f(a, b) for a, b in G])
        torch.testing.assert_close(inf.full_per_ckpt, per, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(inf.full, per.sum(0), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(inf.top_per_ckpt.sum(-1), inf.top_score)
        torch.testing.assert_close(inf.full.gather(1, inf.top_idx), inf.top_score)

def test_first_order_change_of_test_loss(run):
    "One SGD step on z (linear weights only, tiny lr) changes L(z') by about -lr * grad L(z) . grad L(z')."
    models, tr, te, train, test, G = run
    m, lr = models[0], 1e-3
    inf = influence(test[0], train[0], norm='dot', full=True, progress=False).full   # (4, 9)
    lins = list(select_linears(m).values())
    bte = as_batch(te)
    def test_losses():
        with torch.no_grad(): return torch.nn.functional.cross_entropy(m(input_ids=bte['input_ids'], attention_mask=(bte['input_ids'] != 1).long()).logits, bte['labels'], reduction='none')
    before = test_losses()
    for j in (0, 4):
        z = as_batch(tr.select([j]))
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(input_ids=z['input_ids']).logits, z['labels']).backward()
        saved = [l.weight.detach().clone() for l in lins]
        with torch.no_grad():
            for l in lins: l.weight -= lr * l.weight.grad
        delta = test_losses() - before
        with torch.no_grad():
            for l, w in zip(lins, saved): l.weight.copy_(w)
        torch.testing.assert_close(delta, -lr * inf[:, j], rtol=0.05, atol=1e-6)

class Fake:
    "A stand-in store with random sketches (no near-ties), for exact top-m checks."
    def __init__(self, x, ck='e1', **h):
        self.x, self.path = x, Path(f'/fake/{ck}')
        self.header = {'model': 'm', 'layers': ['a'], 'sizes': [x.shape[1]], 'd': 4, 'seed': 0, 'exact': False,
                       'checkpoint': {'name': ck}, 'mask': None, 'ids': list(range(len(x))), **h}
        self.meta = pd.DataFrame({'id': range(len(x))})
    def __len__(self): return len(self.x)
    def rows(self, a, b): return self.x[a:b]

def test_top_m_equals_full_argsort():
    g = torch.Generator().manual_seed(0)
    tr = [Fake(torch.randn(1000, 32, generator=g), ck=c) for c in ('e1', 'e2')]
    te = [Fake(torch.randn(7, 32, generator=g), ck=c) for c in ('e1', 'e2')]
    inf = influence(te, tr, m=100, chunk_size=97, full=True, progress=False)
    assert torch.equal(inf.top_idx, inf.full.argsort(1, descending=True)[:, :100])
    assert torch.equal(inf.neg_idx, inf.full.argsort(1)[:, :100])
    small = influence(te, tr, m=100, chunk_size=4096, progress=False)
    assert torch.equal(small.top_idx, inf.top_idx) and small.full is None
    assert influence(te[:1], tr[:1], m=5000, progress=False).top_idx.shape == (7, 1000)   # m capped at n_train
    assert list(inf.table(0).columns) == ['train_row', 'id', 'score']

def test_refusals():
    x = torch.randn(5, 8)
    base = Fake(x)
    for f, v, msg in [('model', 'other', 'different model'), ('layers', ['b'], 'different layers'), ('d', 16, 'different d'),
                      ('seed', 1, 'different seed'), ('checkpoint', {'name': 'e2'}, 'different checkpoint'),
                      ('mask', [[1.0]], 'different mask')]:
        with pytest.raises(StoreError, match=msg): influence(Fake(x, **{f: v}), base, progress=False)
    with pytest.raises(StoreError, match='one test and one training store per checkpoint'): influence([base, base], [base], progress=False)
    with pytest.raises(StoreError, match='same checkpoint appears twice'): influence([base, base], [base, base], progress=False)
    with pytest.raises(StoreError, match='different ids'): influence([base, Fake(x, ck='e2')], [base, Fake(torch.randn(6, 8), ck='e2')], progress=False)
    with pytest.raises(ValueError, match='norm must be'): influence(base, base, norm='l1', progress=False)
    with pytest.raises(ValueError, match='m must be'): influence(base, base, m=0, progress=False)
