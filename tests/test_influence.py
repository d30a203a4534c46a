"TracIn scoring (modtrace.influence) against explicit gradients and float64 references: precision, the first-order check, top-m, layer-balanced and per-group scores, refusals."
import math
import numpy as np, pandas as pd, pytest, torch
from pathlib import Path
from datasets import Dataset
from modtrace.influence import influence, influence_groups, layer_groups, layer_blocks, GROUPS
from modtrace.store import build_store, StoreError
from modtrace.sketch import explicit_grads, select_linears
from modtrace.batching import model_columns, pad_collator

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
    G = [(a.double(), b.double()) for a, b in G]
    for norm, f in [('cos', lambda a, b: nrm(a) @ nrm(b).T), ('dot', lambda a, b: a @ b.T), ('train', lambda a, b: a @ nrm(b).T)]:
        inf = influence(test, train, m=3, norm=norm, full=True, chunk_size=4, progress=False)
        assert inf.full.dtype == torch.float64 and inf.norm == norm       # exact stores: float64 products
        per = torch.stack([f(a, b) for a, b in G])
        torch.testing.assert_close(inf.full_per_ckpt, per, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(inf.full, per.sum(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(inf.top_per_ckpt.sum(-1), inf.top_score)
        torch.testing.assert_close(inf.full.gather(1, inf.top_idx), inf.top_score)

def test_first_order_change_of_test_loss(run):
    "One SGD step on z (linear weights only, tiny lr) changes L(z') by about -lr * grad L(z) . grad L(z')."
    models, tr, te, train, test, G = run
    m, lr = models[0], 1e-3
    inf = influence(test[0], train[0], norm='dot', full=True, progress=False).full.float()   # (4, 9)
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
    "A stand-in store held in memory (same `.header/.meta/.rows/len` as a SketchStore); counts the rows read."
    def __init__(self, x, ck='e1', **h):
        self.x, self.path, self.reads = x, Path(f'/fake/{ck}'), 0
        self.header = {'model': 'm', 'layers': ['a'], 'sizes': [x.shape[1]], 'd': 4, 'seed': 0, 'exact': False,
                       'checkpoint': {'name': ck}, 'mask': None, 'ids': list(range(len(x))), **h}
        self.meta = pd.DataFrame({'id': range(len(x))})
    def __len__(self): return len(self.x)
    def rows(self, a, b):
        self.reads += 1
        return self.x[a:b]

# -- precision ---------------------------------------------------------------------------------------------

def long_rows(D, seed=0, n_test=3, n_rand=4):
    "Test rows and training rows of D entries; the first n_test training rows nearly parallel to the test rows."
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_test, D, generator=g) * torch.rand(n_test, D, generator=g) * 3
    b = torch.cat([a + 0.3 * torch.randn(n_test, D, generator=g), torch.randn(n_rand, D, generator=g)])
    return a, b

def float64_reference(a, b, sizes):
    "Every norm's scores computed in float64 from the float32 rows, and the scale their error is measured against."
    A, B = a.double(), b.double()
    na, nb = A.norm(dim=1, keepdim=True), B.norm(dim=1, keepdim=True)
    cuts = np.cumsum([0, *sizes])
    layer = torch.stack([nrm(A[:, s:e]) @ nrm(B[:, s:e]).T for s, e in zip(cuts[:-1], cuts[1:])]).mean(0)
    return {'cos': ((A / na) @ (B / nb).T, 1), 'dot': (A @ B.T, na @ nb.T), 'train': (A @ (B / nb).T, na), 'layer_cos': (layer, 1)}

def test_exact_scores_agree_with_float64_on_long_rows():
    "Exact stores (full gradients: long rows): every score within 1e-6 of float64, relative to the norms (float32 norms were off by ~1e-5)."
    sizes = [300_000, 100_000]
    a, b = long_rows(sum(sizes))
    te, tr = Fake(a, exact=True, layers=['x', 'y'], sizes=sizes), Fake(b, exact=True, layers=['x', 'y'], sizes=sizes)
    for norm, (ref, scale) in float64_reference(a, b, sizes).items():
        inf = influence(te, tr, m=3, norm=norm, full=True, chunk_size=3, progress=False)
        err = ((inf.full.double() - ref) / scale).abs().max().item()
        assert err <= 1e-6, f"norm={norm}: {err:.1e} from float64"
        torch.testing.assert_close(inf.top_score.double(), ref.sort(1, descending=True).values[:, :3], rtol=0, atol=1e-6 * float(np.max(np.asarray(scale))))

def test_sketched_scores_lose_nothing_measurable():
    "Sketches (float32 products, float64 norms): within 1e-6 of float64 in cosine; dtype='float64' matches it."
    sizes = [256] * 74
    a, b = long_rows(sum(sizes), seed=1, n_test=20, n_rand=200)
    te, tr = Fake(a, layers=[f'l{i}' for i in range(74)], sizes=sizes), Fake(b, layers=[f'l{i}' for i in range(74)], sizes=sizes)
    ref = float64_reference(a, b, sizes)
    for norm in ('cos', 'train', 'layer_cos'):
        inf = influence(te, tr, m=5, norm=norm, full=True, progress=False)
        assert inf.full.dtype == torch.float32
        r, scale = ref[norm]
        assert ((inf.full.double() - r) / scale).abs().max() <= 1e-6, norm
        inf64 = influence(te, tr, m=5, norm=norm, full=True, progress=False, dtype='float64')
        assert inf64.full.dtype == torch.float64 and ((inf64.full - r) / scale).abs().max() <= 1e-12, norm

def test_zero_rows_score_zero():
    x = torch.zeros(2, 6); x[1] = 1
    te, tr = Fake(x, layers=['a', 'b'], sizes=[3, 3]), Fake(x, layers=['a', 'b'], sizes=[3, 3])
    for norm in ('cos', 'train', 'layer_cos'):
        f = influence(te, tr, m=2, norm=norm, full=True, progress=False).full
        assert torch.isfinite(f).all() and f[0].abs().max() == 0 and f[:, 0].abs().max() == 0

# -- layer-balanced cosine and layer groups --------------------------------------------------------------

TOY_LAYERS = ['classifier.dense', 'roberta.encoder.layer.0.attention.self.query', 'roberta.encoder.layer.1.output.dense']

def toy(rows, ck='e1'): return Fake(torch.tensor(rows, dtype=torch.float32), ck=ck, layers=TOY_LAYERS, sizes=[2, 3, 1], exact=True)

A_ROW = [[1, 0, 1, 1, 0, 2]]
B_ROWS = [[1, 1, 0, 1, 1, -1], [0, 2, 1, 0, 0, 3]]
PER_LAYER = torch.tensor([[1 / math.sqrt(2), 0.5, -1.], [0., 1 / math.sqrt(2), 1.]], dtype=torch.float64)   # by hand: (train row, layer)

def test_layer_balanced_cosine_by_hand():
    a, b = toy(A_ROW), toy(B_ROWS)
    lc = influence(a, b, m=2, norm='layer_cos', full=True, progress=False)
    torch.testing.assert_close(lc.full, PER_LAYER.mean(1)[None])                              # mean of per-layer cosines
    torch.testing.assert_close(influence(a, b, m=2, full=True, progress=False).full,          # Eq. 2: cosine of the whole row
                               torch.tensor([[0., 7 / math.sqrt(7 * 14)]], dtype=torch.float64))
    assert lc.norm == 'layer_cos' and lc.layers == TOY_LAYERS
    # over two checkpoints the per-checkpoint balanced cosines add up
    two = influence([toy(A_ROW, 'e1'), toy(A_ROW, 'e2')], [toy(B_ROWS, 'e1'), toy(B_ROWS[::-1], 'e2')], m=2, norm='layer_cos', full=True, progress=False)
    torch.testing.assert_close(two.full, (PER_LAYER.mean(1) + PER_LAYER.mean(1).flip(0))[None])
    torch.testing.assert_close(two.top_score, two.full.sort(1, descending=True).values)

def test_layers_restrict_scoring_by_hand():
    a, b = toy(A_ROW), toy(B_ROWS)
    one = lambda **kw: influence(a, b, m=2, full=True, progress=False, **kw).full
    torch.testing.assert_close(one(layers='lower'), PER_LAYER[:, 1][None])
    torch.testing.assert_close(one(layers='head'), PER_LAYER[:, 0][None])
    both = torch.tensor([[-1 / math.sqrt(5 * 3), 6 / math.sqrt(5 * 13)]], dtype=torch.float64)   # head + layer 1: (1,0,2)·(1,1,-1), (1,0,2)·(0,2,3)
    torch.testing.assert_close(one(layers=[TOY_LAYERS[2], TOY_LAYERS[0]]), both)
    torch.testing.assert_close(one(layers=[TOY_LAYERS[0], TOY_LAYERS[2]], norm='layer_cos'), PER_LAYER[:, [0, 2]].mean(1)[None])
    torch.testing.assert_close(one(layers='lower', norm='dot'), torch.tensor([[1., 1.]], dtype=torch.float64))
    assert influence(a, b, m=2, layers='lower', progress=False).layers == [TOY_LAYERS[1]]

def test_influence_groups_one_pass_equals_each_group():
    "Every group scored from one read of each chunk; each equals `influence(..., layers=group)`."
    g = torch.Generator().manual_seed(0)
    names = ['classifier.dense', 'classifier.out_proj'] + [f'roberta.encoder.layer.{i}.output.dense' for i in range(6)]
    sizes = [5, 2, 3, 4, 3, 4, 3, 4]
    mk = lambda n, ck: Fake(torch.randn(n, sum(sizes), generator=g), ck=ck, layers=names, sizes=sizes)
    te, tr = [mk(4, c) for c in ('e1', 'e2')], [mk(50, c) for c in ('e1', 'e2')]
    for norm in ('cos', 'layer_cos', 'dot'):
        for s in tr: s.reads = 0
        gr = influence_groups(te, tr, m=7, norm=norm, chunk_size=16, full=True, progress=False)
        assert [s.reads for s in tr] == [4, 4]                                     # ceil(50 / 16) chunks, once each
        assert list(gr) == ['lower', 'middle', 'upper', 'head']
        for name, inf in gr.items():
            alone = influence(te, tr, m=7, norm=norm, layers=name, chunk_size=16, full=True, progress=False)
            torch.testing.assert_close(inf.full_per_ckpt, alone.full_per_ckpt)
            assert torch.equal(inf.top_idx, alone.top_idx) and torch.equal(inf.neg_idx, alone.neg_idx)
            assert inf.layers == layer_groups(names)[name]
    custom = influence_groups(te, tr, groups={'attn': names[2:4], 'cls': 'head'}, m=3, full=True, progress=False)
    torch.testing.assert_close(custom['cls'].full, influence(te, tr, layers='head', full=True, progress=False).full)
    torch.testing.assert_close(custom['attn'].full, influence(te, tr, layers=names[2:4], full=True, progress=False).full)
    assert list(influence_groups(te, tr, groups=['head', 'lower'], progress=False)) == ['head', 'lower']

def test_layer_groups_of_xlmr_and_bert_names():
    xlmr = lambda L: ['classifier.dense', 'classifier.out_proj'] + [f'roberta.encoder.layer.{i}.attention.self.query' for i in range(L)]
    g12 = layer_groups(xlmr(12))
    assert {k: len(v) for k, v in g12.items()} == {'embeddings': 0, 'lower': 4, 'middle': 4, 'upper': 4, 'head': 2}
    assert g12['upper'][0] == 'roberta.encoder.layer.8.attention.self.query'
    assert {k: len(v) for k, v in layer_groups(xlmr(4)).items()} == {'embeddings': 0, 'lower': 2, 'middle': 1, 'upper': 1, 'head': 2}
    assert layer_groups(xlmr(2)[:3], n_layers=12)['lower'] == [xlmr(2)[2]]
    bert = layer_groups(['bert.encoder.layer.0.output.dense', 'bert.encoder.layer.2.output.dense', 'bert.pooler.dense', 'classifier'])
    assert bert['head'] == ['bert.pooler.dense', 'classifier'] and bert['middle'] == []
    assert bert['lower'] == ['bert.encoder.layer.0.output.dense'] and bert['upper'] == ['bert.encoder.layer.2.output.dense']
    assert list(layer_groups([])) == list(GROUPS)

def test_layer_blocks_split_the_row():
    h = {'layers': TOY_LAYERS, 'sizes': [2, 3, 1]}
    assert layer_blocks(h) == [slice(0, 2), slice(2, 5), slice(5, 6)]
    assert layer_blocks(h, 'middle') == [slice(5, 6)]
    with pytest.raises(StoreError, match='3 layers but 2 sizes'): layer_blocks({'layers': TOY_LAYERS, 'sizes': [2, 3]})

def test_bad_layer_options_are_refused():
    a, b = toy(A_ROW), toy(B_ROWS)
    for kw, msg in [(dict(norm='layer-cos'), 'norm must be one of'), (dict(layers='upper'), "No sketched layer is in group 'upper'"),
                    (dict(layers=['classifier.out_proj']), 'not in the store'), (dict(layers=[]), 'layers must be None'),
                    (dict(layers='encoder'), 'layers must be None'), (dict(layers=3), 'layers must be None'),
                    (dict(dtype='float16'), 'dtype must be'), (dict(chunk_size=0), 'chunk_size must be'), (dict(m=1.5), 'm must be')]:
        with pytest.raises(ValueError, match=msg): influence(a, b, progress=False, **kw)
    with pytest.raises(ValueError, match=r"Unknown group\(s\) \['top'\]"): influence_groups(a, b, groups=['lower', 'top'], progress=False)
    with pytest.raises(ValueError, match="No sketched layer is in group 'upper'"): influence_groups(a, b, groups=['upper'], progress=False)
    with pytest.raises(ValueError, match='groups must be'): influence_groups(a, b, groups={}, progress=False)
    with pytest.raises(ValueError, match='Cannot place layer'): layer_groups(['model.decoder.fc1'])
    with pytest.raises(ValueError, match='pass the model'): layer_groups(TOY_LAYERS, n_layers=1)
    with pytest.raises(ValueError, match='n_layers must be'): layer_groups(TOY_LAYERS, n_layers=0)
    bad = Fake(torch.randn(2, 5), layers=['a', 'b'], sizes=[3, 3])
    with pytest.raises(StoreError, match='sizes sum to 6'): influence(bad, bad, progress=False)

# -- top-m and refusals ------------------------------------------------------------------------------------

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
    for f in ('top_idx', 'top_score', 'top_per_ckpt', 'neg_idx', 'neg_score', 'neg_per_ckpt', 'test_meta', 'train_meta',
              'checkpoints', 'full', 'full_per_ckpt'):
        assert hasattr(inf, f)

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

@pytest.mark.parametrize('norm', ['cos', 'dot', 'layer_cos'])
def test_per_checkpoint_rankings_in_the_same_pass_equal_scoring_each_checkpoint(run, norm):
    "The study used to score every checkpoint twice (summed, then alone); one pass must give the very same rankings."
    _, _, _, train, test, _ = run
    both = influence(test, train, m=4, norm=norm, per_checkpoint=True, progress=False)
    for k in range(len(train)):
        alone = influence(test[k], train[k], m=4, norm=norm, progress=False)
        for f in ('top_idx', 'top_score', 'neg_idx', 'neg_score'):
            assert torch.equal(getattr(both.per_checkpoint[k], f), getattr(alone, f)), (k, f)
    plain = influence(test, train, m=4, norm=norm, progress=False)
    assert torch.equal(both.top_idx, plain.top_idx) and torch.equal(both.neg_score, plain.neg_score)
