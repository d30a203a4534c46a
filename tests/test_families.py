"Every supported model family on a tiny random-init config: head slices, gate, head importance, SFT's exact freeze, sketches."
import copy, warnings
import pytest, torch
from torch import nn
from modtrace.model import (FAMILIES, ModelError, toy_classifier, model_family, model_shape, attention_output,
                            load_classifier, check_padding)
from modtrace.units import head_slices, kv_groups, head_gate, head_param_masks, mask_from

torch.set_num_threads(1)

# (family or model type, toy_classifier kwargs): every registered model type must appear here
CASES = {'xlmr': {}, 'roberta': {}, 'bert': {}, 'distilbert': {}, 'deberta-v2': {},
         'deberta-v2-pos': dict(family='deberta-v2', share_att_key=False),      # separate pos_query_proj / pos_key_proj
         'llama': {}, 'llama-gqa': dict(family='llama', kv_heads=2), 'mistral': dict(kv_heads=2),
         'qwen2': dict(kv_heads=2), 'qwen3': dict(kv_heads=1), 'gpt-neox': {}, 'bloom': {}}
GQA = {'llama-gqa', 'mistral', 'qwen2', 'qwen3'}
L, H = 2, 4

def toy(case, **kw): return toy_classifier(**({'family': case} | CASES[case] | kw))

def batch(lengths=(9, 3, 6, 5), seed=0, vocab=60):
    "Right-padded token ids (<s>=0 ... </s>=2, <pad>=1), attention mask and labels."
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), 1); am = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g); ids[i, 0], ids[i, n - 1] = 0, 2; am[i, :n] = 1
    return {'input_ids': ids, 'attention_mask': am, 'labels': torch.randint(0, 2, (len(lengths),), generator=g)}

B = batch()
def inputs(b=B): return {k: b[k] for k in ('input_ids', 'attention_mask')}
def logits(m, xi=None, b=B):
    with head_gate(m, torch.ones(L, H) if xi is None else xi): return m(**inputs(b)).logits
def hooks_left(m): return sum(len(attention_output(m, l)._forward_pre_hooks) for l in range(L))

def test_every_registered_model_type_has_a_case():
    assert {toy(c).config.model_type for c in CASES} == set(FAMILIES)

@pytest.mark.parametrize('case', CASES)
def test_shape_groups_and_slices_partition_the_head_parameters(case):
    m = toy(case)
    assert model_shape(m) == (L, H)
    kv = CASES[case].get('kv_heads', H)
    assert kv_groups(m) == [tuple(range(g * H // kv, (g + 1) * H // kv)) for g in range(kv)]
    params = dict(m.named_parameters())
    seen = {}
    for s in head_slices(m):
        c = seen.setdefault(s.param, torch.zeros(params[s.param].shape[s.dim], dtype=torch.long))
        c[s.start:s.stop] += 1
        assert s.stop - s.start == 4                                     # one head's size (16 / 4)
    assert all((c == 1).all() for c in seen.values())                    # every row / column owned exactly once
    assert len({s.param for s in head_slices(m) if s.role == 'o'}) == L   # W_O's weight, columns; its bias is shared

@pytest.mark.parametrize('case', CASES)
def test_head_slices_are_exactly_what_each_head_reads(case):
    "Perturbing a slice's Q/K/V entries changes the context of its query heads, and of no other head."
    m = toy(case, dtype=torch.float64)
    ctx = {}
    hk = attention_output(m, 1).register_forward_pre_hook(lambda mod, a: ctx.__setitem__('c', a[0].detach()))
    try:
        with torch.no_grad():
            m(**inputs()); base = ctx['c'].unflatten(-1, (H, -1))       # (B, T, H, d_head)
            params = dict(m.named_parameters())
            for s in [s for s in head_slices(m) if s.layer == 1 and s.role != 'o']:
                p = params[s.param]; keep = p.detach().clone()
                blk = p.narrow(s.dim, s.start, s.stop - s.start)
                blk.add_(torch.randn(blk.shape, dtype=blk.dtype, generator=torch.Generator().manual_seed(0)))
                m(**inputs()); new = ctx['c'].unflatten(-1, (H, -1))
                p.copy_(keep)
                changed = {h for h in range(H) if not torch.allclose(new[..., h, :], base[..., h, :], atol=1e-12, rtol=0)}
                if s.role in ('k', 'pos_key_proj') and s.param.endswith('bias'):   # softmax ignores a key bias
                    assert changed <= set(s.heads), s
                else: assert changed == set(s.heads), (s, changed)
    finally: hk.remove()

@pytest.mark.parametrize('case', CASES)
def test_gating_a_head_equals_zeroing_its_output_columns(case):
    m = toy(case, dtype=torch.float64); m2 = copy.deepcopy(m)
    xi = mask_from([(0, 1), (1, 3)], (L, H))
    with torch.no_grad():
        attention_output(m2, 0).weight[:, 4:8] = 0; attention_output(m2, 1).weight[:, 12:16] = 0
        gated, zeroed, full = logits(m, xi), m2(**inputs()).logits, logits(m)
    torch.testing.assert_close(gated, zeroed, atol=1e-12, rtol=1e-10)
    assert not torch.allclose(gated, full)                              # the heads mattered
    assert hooks_left(m) == 0

@pytest.mark.parametrize('case', CASES)
def test_gate_gradient_equals_finite_differences(case):
    """d loss / d xi from the gate (per example, a real-valued mask of ones) = finite differences: Eq. 1's signal.
    Five-point central differences; the decoders compute RMSNorm / softmax in float32 even in a float64 model,
    which limits the finite differences (not the gradient) to ~1e-5 of the gradient's scale."""
    m = toy(case, dtype=torch.float64)
    def losses(xi): return nn.functional.cross_entropy(logits(m, xi), B['labels'], reduction='none')   # (B,)
    xi = torch.ones(4, L, H, dtype=torch.float64, requires_grad=True)   # (B, L, H)
    (g,) = torch.autograd.grad(losses(xi).sum(), xi)
    fd, h = torch.zeros_like(g), 3e-2
    with torch.no_grad():
        for l in range(L):
            for k in range(H):
                e = torch.zeros(L, H, dtype=torch.float64); e[l, k] = h          # the same step for every example
                fd[:, l, k] = (-losses(1 + 2*e) + 8*losses(1 + e) - 8*losses(1 - e) + losses(1 - 2*e)) / (12 * h)
    tol = 2e-4 if model_family(m).decoder else 1e-8
    torch.testing.assert_close(g, fd, atol=tol * g.abs().max().item(), rtol=0)
    assert g.abs().min() > 0

@pytest.mark.parametrize('case', CASES)
def test_right_padded_batch_equals_each_example_alone(case):
    m = toy(case)
    xis = torch.stack([mask_from([(b % L, b)], (L, H)) for b in range(4)])   # (B, L, H)
    with torch.no_grad():
        batched = logits(m, xis)
        for b in range(4):
            n = int(B['attention_mask'][b].sum())
            torch.testing.assert_close(logits(m, xis[b], {'input_ids': B['input_ids'][b:b+1, :n],
                                                          'attention_mask': B['attention_mask'][b:b+1, :n]})[0], batched[b],
                                       atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('case', [c for c in CASES if not c.startswith(('deberta-v2', 'bloom'))])   # no sdpa in transformers
def test_eager_and_sdpa_agree_under_a_mask(case):
    xi = mask_from([(0, 1), (1, 2)], (L, H))
    with torch.no_grad(): a, b = logits(toy(case), xi), logits(toy(case, attn='sdpa'), xi)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

def sft_steps(m, xi, freeze:bool, steps=2):
    """AdamW (weight decay 0.1): one step of another language (all heads on), then `steps` steps gated by `xi`,
    with SFT's step that restores the disabled heads' entries (`freeze`) or a plain one.
    Returns the parameters before and after the `xi` steps."""
    from modtrace.finetune import frozen_entries, step_frozen
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    def step(mask, frozen):
        with head_gate(m, mask): nn.functional.cross_entropy(m(**inputs()).logits, B['labels']).backward()
        step_frozen(opt, frozen) if frozen else opt.step()
        opt.zero_grad()
    step(torch.ones(L, H), None)                       # the momentum now holds every head's gradient
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for _ in range(steps): step(xi, frozen_entries(m, xi) if freeze else None)
    return before, dict(m.named_parameters())

@pytest.mark.parametrize('case', CASES)
def test_sft_leaves_disabled_heads_bit_identical_and_trains_the_rest(case):
    # layer 0: one query head off (under GQA, part of a K/V group); layer 1: heads 0 and 1 off (a whole group)
    xi = mask_from([(0, 0), (1, 0), (1, 1)], (L, H))
    m0 = toy(case)
    with torch.no_grad():                              # pretrained models' biases are not zero (toys' are)
        for n, p in m0.named_parameters():
            if n.endswith('bias'): p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(n)))
    pm = head_param_masks(m0, xi)
    before, after = sft_steps(copy.deepcopy(m0), xi, freeze=True)
    before_free, free = sft_steps(copy.deepcopy(m0), xi, freeze=False)
    assert all(torch.equal(before[n], before_free[n]) for n in before)
    for n, mask in pm.items():
        assert torch.equal(after[n][mask], before[n][mask]), n                # frozen: bit-identical
        assert (free[n][mask] != before[n][mask]).all(), n                    # ... where a plain AdamW step moves them
        assert (after[n][~mask] != before[n][~mask]).all(), n                 # the enabled heads' entries train
    assert all((after[n] != before[n]).any() for n in before if n not in pm and n.endswith('weight'))  # shared ones too
    slices = [s for s in head_slices(m0) if s.param in pm]
    frozen = {(s.layer, s.role, s.heads) for s in slices if pm[s.param].narrow(s.dim, s.start, s.stop - s.start).all()}
    assert all(not pm[s.param].narrow(s.dim, s.start, s.stop - s.start).any() for s in slices
               if (s.layer, s.role, s.heads) not in frozen)                    # a slice is frozen whole or not at all
    grouped = case in GQA
    kv0 = kv_groups(m0)[0]                                                      # (0, 1) under GQA with 2 groups
    assert {(0, 'q', (0,)), (0, 'o', (0,)), (1, 'q', (1,)), (1, 'o', (1,))} <= frozen
    assert not {(0, 'q', (1,)), (0, 'o', (1,)), (1, 'q', (2,))} & frozen
    assert ((0, 'k', kv0) in frozen) == ((0, 'v', kv0) in frozen) == (not grouped or kv0 == (0,))
    assert ((1, 'k', kv0) in frozen) == (set(kv0) <= {0, 1})                   # a wholly disabled group's K/V freeze
    if grouped and kv0 == (0, 1):
        k = next(s for s in head_slices(m0) if s.layer == 0 and s.role == 'k' and s.param.endswith('weight'))
        r = slice(k.start, k.stop)                                             # shared K rows of the partly disabled group
        assert k.param not in pm or not pm[k.param][r].any()
        assert (after[k.param][r] != before[k.param][r]).all()

# DeBERTa-v2's relative attention applies the Q/K projections (share_att_key, as mDeBERTa) or pos_query_proj /
# pos_key_proj to `encoder.rel_embeddings`, one input shared by the whole batch (1, 2 x span, hidden), repeated per
# example only after the projection: no hook on that call can tell the examples apart, so the Sketcher sketches such
# models one example at a time (exact). Every other family keeps its one batched pass.
ONE_AT_A_TIME = {'deberta-v2', 'deberta-v2-pos'}

@pytest.mark.parametrize('mask', ['shared', 'per_example'])
@pytest.mark.parametrize('case', CASES)
def test_hook_sketch_equals_the_explicit_gradients_sketch(case, mask):
    from modtrace.sketch import Sketcher, explicit_grads, sketch_of
    m = toy(case)
    xi = (mask_from([(0, 1), (1, 2)], (L, H)) if mask == 'shared' else
          torch.stack([mask_from([(b % L, b), ((b + 1) % L, (b + 2) % H)], (L, H)) for b in range(4)]))   # (B, L, H)
    g = explicit_grads(m, B, xi=xi)                                              # B is right-padded: 9, 3, 6, 5 tokens
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        with Sketcher(m, d=16, seed=3) as sk: S, _ = sk(B, xi=xi)
    said = [str(w.message) for w in ws if 'one example at a time' in str(w.message)]
    assert sk.one_at_a_time == (case in ONE_AT_A_TIME) == bool(said), said
    if case == 'deberta-v2-pos': assert {n.rsplit('.', 1)[-1] for n in sk.names} >= {'pos_query_proj', 'pos_key_proj'}
    torch.testing.assert_close(S, sketch_of(g, sk), rtol=1e-4, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with Sketcher(m, exact=True) as ex: E, _ = ex(B, xi=xi)
    torch.testing.assert_close(E, g, rtol=1e-4, atol=1e-6)

@pytest.mark.parametrize('case', sorted(ONE_AT_A_TIME))
def test_deberta_without_relative_position_layers_keeps_one_batched_pass(case):
    "Leaving out the layers that read the relative position embeddings: one batched pass, still exact."
    from modtrace.sketch import Sketcher, explicit_grads, sketch_of
    m, xi, layers = toy(case), mask_from([(0, 1), (1, 2)], (L, H)), r'value_proj|output\.dense|intermediate|pooler|classifier'
    g = explicit_grads(m, B, layers=layers, xi=xi)
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                           # no switch to one example at a time
        with Sketcher(m, d=16, seed=3, layers=layers) as sk: S, _ = sk(B, xi=xi)
    assert not any('query' in n or 'key' in n for n in sk.names) and len(sk.names) == 4 * L + 2
    assert not sk.one_at_a_time
    torch.testing.assert_close(S, sketch_of(g, sk), rtol=1e-4, atol=1e-6)

@pytest.mark.parametrize('case', CASES)
def test_importance_is_the_mean_absolute_gate_gradient(case):
    from datasets import Dataset
    from modtrace.subnetworks import importance
    m = toy(case, dtype=torch.float64)
    rows = [{'input_ids': B['input_ids'][i, :int(B['attention_mask'][i].sum())].tolist(), 'label': int(B['labels'][i]),
             'lang': 'en'} for i in range(4)]
    hi = importance(m, Dataset.from_list(rows), normalize=False, batch_size=4)
    xi = torch.ones(4, L, H, dtype=torch.float64, requires_grad=True)
    with head_gate(m, xi): loss = nn.functional.cross_entropy(m(**inputs()).logits, B['labels'], reduction='sum')
    (g,) = torch.autograd.grad(loss, xi)
    torch.testing.assert_close(hi.double(), g.abs().mean(0), atol=1e-6, rtol=1e-5)

@pytest.mark.parametrize('case', CASES)
def test_load_classifier_round_trip_gives_decoders_a_pad_token(case, tmp_path):
    m = toy(case); fam = model_family(m)
    if fam.decoder: m.config.pad_token_id = None                              # as Llama checkpoints are saved
    m.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        c = load_classifier(tmp_path, seed=1)
    notes = ' '.join(str(w.message) for w in ws)
    assert model_family(c) is fam and model_shape(c) == (L, H)
    if fam.decoder: assert c.config.pad_token_id == 2 and 'no pad token id; using 2 (its eos token)' in notes
    else: assert c.config.pad_token_id == 1 and 'pad token' not in notes
    if case in ('deberta-v2', 'bloom'): assert c.config._attn_implementation == 'eager' and "using 'eager'" in notes
    class Tok: pad_token_id, padding_side = 7, 'right'
    with pytest.raises(ModelError, match='pads with id 7'): check_padding(c, Tok)

def test_gqa_mask_needs_divisible_groups_and_a_gqa_family():
    with pytest.raises(ModelError, match='kv_heads=3 must divide heads=4'): toy_classifier(family='qwen2', kv_heads=3)
    with pytest.raises(ModelError, match='BLOOM has no grouped-query attention'): toy_classifier(family='bloom', kv_heads=2)
