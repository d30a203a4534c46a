"Hook sketches against explicit per-example gradients (modtrace.sketch)."
import warnings
from types import SimpleNamespace
import pytest, torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from datasets import Dataset
from modtrace.sketch import Sketcher, SketchError, check_d, select_linears, projection, explicit_grads, sketch_of, iter_sketches
from modtrace.model import toy_classifier
from modtrace.units import random_mask, head_gate

torch.set_num_threads(1)

def batch(lengths=(9, 3, 6, 5), seed=0, vocab=60):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.full((len(lengths), T), 1); att = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g); ids[i, 0], ids[i, n - 1] = 0, 2; att[i, :n] = 1
    return {'input_ids': ids, 'attention_mask': att, 'labels': torch.randint(0, 2, (len(lengths),), generator=g)}

@pytest.mark.parametrize('attn', ['eager', 'sdpa'])
@pytest.mark.parametrize('mask', [None, 'shared', 'per_example'])
def test_hook_sketch_equals_projected_explicit_gradient(tiny_model, attn, mask):
    m, b = tiny_model(attn=attn), batch()
    xi = {None: None, 'shared': random_mask(2, 4, 5, seed=1),
          'per_example': torch.stack([random_mask(2, 4, 3 + i, seed=i) for i in range(4)])}[mask]
    g = explicit_grads(m, b, xi=xi)
    with Sketcher(m, d=16, seed=3) as sk: S, _ = sk(b, xi=xi)
    ref = sketch_of(g, sk)
    assert S.shape == (4, len(sk.names) * 16)
    torch.testing.assert_close(S, ref, rtol=1e-4, atol=1e-7)
    with Sketcher(m, exact=True) as ex: E, _ = ex(b, xi=xi)
    torch.testing.assert_close(E, g, rtol=1e-4, atol=1e-7)

def test_padding_and_batch_sum_do_not_change_an_example(tiny_model):
    "Each row equals the example sketched alone, unpadded: no padding leak, no 1/B scaling."
    m, b = tiny_model(), batch()
    with Sketcher(m, d=64) as sk:
        S, _ = sk(b)
        for i in range(4):
            keep = b['attention_mask'][i].bool()
            one = {'input_ids': b['input_ids'][i][keep][None], 'labels': b['labels'][i:i + 1]}
            torch.testing.assert_close(sk(one)[0][0], S[i], rtol=1e-4, atol=1e-7)

def test_unbiased_and_error_shrinks_like_inverse_sqrt_d(tiny_model):
    m, b = tiny_model(), batch()
    with Sketcher(m, exact=True, layers='classifier|layer.1.output') as ex: E, _ = ex(b)
    exact, scale = (E[0] * E[2]).sum(), E[0].norm() * E[2].norm()
    def errs(d, n=150):
        out = []
        for s in range(n):
            with Sketcher(m, d=d, seed=s, layers='classifier|layer.1.output') as sk: S, _ = sk(b)
            out.append(((S[0] * S[2]).sum() - exact) / scale)
        return torch.stack(out)
    e4, e16, e64 = errs(4), errs(16), errs(64)
    assert abs(e64.mean()) < 3 * e64.std() / 150 ** .5 + 1e-3          # unbiased within its standard error
    assert e4.std() > e16.std() > e64.std()
    r = (e4.std() / e64.std()).item()
    assert 2 < r < 8, r                                                  # ~ sqrt(64/4) = 4

def test_params_frozen_inside_and_restored(tiny_model):
    m = tiny_model(); m.classifier.dense.weight.requires_grad_(False)
    before = [p.requires_grad for p in m.parameters()]
    with Sketcher(m, d=4) as sk:
        assert not any(p.requires_grad for p in m.parameters())
        sk(batch())
    assert [p.requires_grad for p in m.parameters()] == before
    assert all(p.grad is None for p in m.parameters())                   # activation-only backward

def test_projection_is_deterministic_per_seed_and_layer():
    a = projection('x', 4, 9, 0, 'G1')
    assert torch.equal(a, projection('x', 4, 9, 0, 'G1'))
    assert not torch.equal(a, projection('y', 4, 9, 0, 'G1'))
    assert not torch.equal(a, projection('x', 4, 9, 1, 'G1'))
    assert not torch.equal(a, projection('x', 4, 9, 0, 'G2'))
    big = projection('z', 64, 4000, 0, 'G1')
    assert abs(big.var().item() - 1 / 64) < 1e-3

def test_bad_inputs(tiny_model):
    m = tiny_model()
    for d in (0, 200, -4, 2.5): 
        with pytest.raises(SketchError, match='perfect square'): Sketcher(m, d=d)
    with pytest.raises(SketchError, match='matches no nn.Linear'): Sketcher(m, layers=['classifier', 'nothing_here'])
    with pytest.raises(SketchError, match='inside `with'): Sketcher(m, d=4)(batch())
    assert check_d(1024) == 32
    assert len(select_linears(m)) == 2 * 6 + 2

def test_iter_sketches_language_masks(tiny_model):
    m, b = tiny_model(), batch()
    ds = Dataset.from_dict({'id': list('abcd'), 'lang': ['xx', 'yy', 'xx', 'yy'], 'label': b['labels'].tolist(),
                            'input_ids': [r[a.bool()].tolist() for r, a in zip(b['input_ids'], b['attention_mask'])]})
    masks = {'xx': random_mask(2, 4, 4, seed=0), 'yy': random_mask(2, 4, 6, seed=1)}
    xi = torch.stack([masks[l] for l in ds['lang']])
    with Sketcher(m, d=16) as sk:
        ref, _ = sk(b, xi=xi)
        out = list(iter_sketches(sk, ds, xi=masks, batch_size=3, progress=False))
    assert [o[0] for o in out] == [0, 3]
    torch.testing.assert_close(torch.cat([o[1] for o in out]), ref, rtol=1e-4, atol=1e-7)

def test_untokenized_split_is_refused(tiny_model):
    ds = Dataset.from_dict({'id': ['a'], 'lang': ['xx'], 'label': [0], 'text': ['hello']})
    with Sketcher(tiny_model(), d=4) as sk, pytest.raises(SketchError, match=r"lacks column\(s\) \['input_ids'\]"):
        list(iter_sketches(sk, ds, progress=False))


def quietly(f, *a, **kw):
    "f(*a, **kw) and the texts of the warnings it gave."
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        out = f(*a, **kw)
    return out, [str(w.message) for w in ws]

@pytest.mark.parametrize('share_att_key', [True, False])
def test_deberta_relative_positions_sketched_one_example_at_a_time(share_att_key):
    "DeBERTa-v2's Q/K (or pos_*_proj) read relative embeddings shared by the batch: exact, one example at a time."
    m, b = toy_classifier(family='deberta-v2', share_att_key=share_att_key), batch()
    xi = torch.stack([random_mask(2, 4, 3 + i, seed=i) for i in range(4)])    # (B, L, H), with padding in b
    g = explicit_grads(m, b, xi=xi)
    with Sketcher(m, d=16, seed=3) as sk:
        (S, logits), said = quietly(sk, b, xi=xi)
        (S2, _), again = quietly(sk, b, xi=xi)
    first = 'query_proj' if share_att_key else 'pos_key_proj'
    assert sk.one_at_a_time and sk.shared == (f'deberta.encoder.layer.0.attention.self.{first}', (1, 16, 16))
    assert len(said) == 1 and first in said[0] and 'layers=' in said[0] and again == []      # said once
    torch.testing.assert_close(S, sketch_of(g, sk), rtol=1e-4, atol=1e-6)
    assert torch.equal(S, S2)
    with torch.no_grad(), head_gate(m, xi):
        torch.testing.assert_close(logits, m(input_ids=b['input_ids'], attention_mask=b['attention_mask']).logits, rtol=1e-4, atol=1e-5)
    with Sketcher(m, exact=True) as ex: (E, _), _ = quietly(ex, b, xi=xi)
    torch.testing.assert_close(E, g, rtol=1e-4, atol=1e-6)
    qk = [n for n in sk.names if n.endswith(('query_proj', 'key_proj'))]       # Q, K (+ pos_query, pos_key) per layer
    assert len(qk) == (2 if share_att_key else 4) * 2

def test_deberta_iter_sketches_with_a_last_batch_of_one():
    m, b = toy_classifier(family='deberta-v2'), batch()
    ds = Dataset.from_dict({'id': list('abcd'), 'lang': ['xx'] * 4, 'label': b['labels'].tolist(),
                            'input_ids': [r[a.bool()].tolist() for r, a in zip(b['input_ids'], b['attention_mask'])]})
    with Sketcher(m, d=16) as sk: out, _ = quietly(lambda: list(iter_sketches(sk, ds, batch_size=3, progress=False)))
    assert [o[0] for o in out] == [0, 3]
    torch.testing.assert_close(torch.cat([o[1] for o in out]), sketch_of(explicit_grads(m, b), sk), rtol=1e-4, atol=1e-6)

class Toy(nn.Module):
    """Embeddings, then one linear whose rows are not the examples, then a masked mean and a head.
    kind='table': a linear of a parameter table with as many rows as the batch (shape alone cannot tell);
    kind='flat': a linear over the batch's tokens flattened to (B·T, n)."""
    def __init__(self, kind, n=8, rows=4):
        super().__init__(); torch.manual_seed(0)
        self.kind, self.emb, self.table = kind, nn.Embedding(60, n), nn.Parameter(torch.randn(rows, n))
        self.mid, self.head = nn.Linear(n, n), nn.Linear(n, 2)
    def get_input_embeddings(self): return self.emb
    def forward(self, input_ids, attention_mask, **kw):
        h = self.emb(input_ids)                                                  # (B, T, n)
        if self.kind == 'table': p = self.mid(self.table); h = torch.tanh(h @ p.T) @ p   # p (rows, n): one for the batch
        else: h = torch.tanh(self.mid(h.reshape(-1, h.shape[-1]))).reshape(h.shape)       # (B·T, n) rows: tokens
        am = attention_mask[..., None].float()
        return SimpleNamespace(logits=self.head((h * am).sum(1) / am.sum(1)))     # (B, 2)

@pytest.mark.parametrize('kind', ['table', 'flat'])
def test_any_linear_whose_rows_are_not_the_examples_is_exact(kind):
    m, b = Toy(kind), batch()
    g = explicit_grads(m, b)
    with Sketcher(m, d=4, seed=1) as sk: (S, _), said = quietly(sk, b)
    assert sk.one_at_a_time and sk.shared == ('mid', (4, 8) if kind == 'table' else (4 * 9, 8)) and len(said) == 1
    torch.testing.assert_close(S, sketch_of(g, sk), rtol=1e-4, atol=1e-6)
    with Sketcher(m, exact=True) as ex: (E, _), _ = quietly(ex, b)
    torch.testing.assert_close(E, g, rtol=1e-4, atol=1e-6)

def test_what_the_hooks_cannot_see_is_refused(tiny_model):
    m = tiny_model(); m.unused = nn.Linear(16, 16)
    with Sketcher(m, d=4) as sk, pytest.raises(SketchError, match=r"Layer 'unused' \(of 1\) was never called .*\(layers="):
        sk(batch())
    with Sketcher(m, d=4, layers='classifier') as sk: sk(batch())             # fine without it
    t = tiny_model(); t.classifier.out_proj.weight = nn.Parameter(t.classifier.dense.weight[:2].detach().clone())
    t.roberta.encoder.layer[1].output.dense.weight = t.roberta.encoder.layer[0].output.dense.weight
    with pytest.raises(SketchError, match=r"'roberta.encoder.layer.0.output.dense' shares its weight with "
                                          r"'roberta.encoder.layer.1.output.dense' \(tied weights\)"):
        Sketcher(t, d=4)
    Sketcher(t, d=4, layers='attention')                                      # the untied layers alone are fine
    class NoEmb(Toy):
        def get_input_embeddings(self): return self.spare
    e = NoEmb('flat'); e.spare = nn.Embedding(60, 8)
    with Sketcher(e, d=4) as sk, pytest.raises(SketchError, match=r"never called its input embeddings \(Embedding\)"):
        quietly(sk, batch())

class Shapes(TorchDispatchMode):
    "Every op's output shape inside the block."
    def __init__(self): super().__init__(); self.seen = set()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(o, torch.Tensor): self.seen.add(tuple(o.shape))
        return out

def gradient_shaped(sk, b):
    "Shapes of one call's tensors that look like per-example weight gradients: (B', m, n), (B', n, m), (B', m·n), B' ∈ {1, B}."
    full, Bs = {(l.out_features, l.in_features) for l in sk.linears.values()}, {1, len(b['labels'])}
    widths = {w for mn in full for w in mn}                                      # (B, m·n) = (B, 32) could be an activation
    with Shapes() as rec: quietly(sk, b)
    return {s for s in rec.seen for m_, n_ in full for B_ in Bs
            if s in {(B_, m_, n_), (B_, n_, m_)} or (s == (B_, m_ * n_) and m_ * n_ not in widths)}

@pytest.mark.parametrize('family', ['xlmr', 'deberta-v2'])
def test_no_per_example_weight_gradient_is_formed(family):
    "Scale: the hooks only multiply k-column projections; only ExactProjector forms (B, m·n) gradients."
    m, b = toy_classifier(family=family, **({'position_buckets': 5} if family == 'deberta-v2' else {})), batch()  # (1, 10, 16) rel. embeddings: no (1, 16, 16) look-alike
    with Sketcher(m, d=16) as sk: assert gradient_shaped(sk, b) == set()
    with Sketcher(m, exact=True) as ex: assert (4 if family == 'xlmr' else 1, 32 * 16) in gradient_shaped(ex, b)
