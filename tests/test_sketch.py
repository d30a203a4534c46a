"Hook sketches against explicit per-example gradients (modtrace.sketch)."
import pytest, torch
from datasets import Dataset
from modtrace.sketch import Sketcher, SketchError, check_d, select_linears, projection, explicit_grads, sketch_of, iter_sketches
from modtrace.model import random_mask

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
