"""The unit slot (issue 18): a subnetwork's unit is one `Unit` class plus one `register_unit` line, and a set of masks is
checked once where it enters (pruning, a file, a user's dict) and travels as `Masks` after that.

The toy unit here switches a whole layer's attention on and off: its mask is (L, 1). Its gate, importance, freeze rule and
sketches must equal those of the head mask that repeats each layer's entry over the H heads, which the tests compute
independently through the heads unit."""
import json
import pandas as pd, pytest, torch
from conftest import make_tiny_model
from test_subnetworks import make_ds
from test_study import kw
from modtrace import units
from modtrace.config import OptionError, StudyConfig
from modtrace.finetune import finetune, frozen_entries, predict, train_step
from modtrace.model import ModelError, cross_entropy, ffn_output, model_shape, neuron_shape, toy_classifier
from modtrace.batching import example_loader
from modtrace.sketch import Sketcher, iter_sketches
from modtrace.stages import prepare
from modtrace.study import Study, run_study
from modtrace.subnetworks import find_subnetworks, importance, prune
from modtrace.units import (HEADS, NEURONS, UNITS, HeadGate, Masks, Unit, check_masks, head_param_masks, load_masks, register_unit,
                            save_masks)
torch.set_num_threads(1)

class LayerGate:
    "The heads' gate, each layer's one entry repeated over its H heads (ξ: (L, 1) or (B, L, 1))."
    def __init__(self, model, xi):
        self.H = model_shape(model)[1]
        self.gate = HeadGate(model, self.heads(xi))
    def heads(self, xi): return torch.as_tensor(xi).expand(*torch.as_tensor(xi).shape[:-1], self.H)
    @property
    def xi(self): return self.gate.xi
    @xi.setter
    def xi(self, xi): self.gate.xi = self.heads(xi)
    def __enter__(self): self.gate.__enter__(); return self
    def __exit__(self, *exc): return self.gate.__exit__(*exc)

class AttentionLayers(Unit):
    "A whole layer's attention as one unit."
    name, one = 'attention-layers', 'attention layer'
    def shape(self, model): return (model_shape(model)[0], 1)
    def gate(self, model, xi): return LayerGate(model, xi)
    def frozen(self, model, xi): return head_param_masks(model, xi.expand(*model_shape(model)))
    def per_round(self, shape, fraction, n_enabled): return 1

LAYERS = register_unit(AttentionLayers())          # the one registry line

def as_heads(xi, H=4): return torch.as_tensor(xi).expand(*torch.as_tensor(xi).shape[:-1], H)

def test_a_unit_needs_a_name_and_unknown_units_are_refused_before_any_work():
    with pytest.raises(TypeError, match='named `Unit`'): register_unit(Unit())
    with pytest.raises(OptionError, match=r"unit must be one of attention-layers, heads, neurons"): StudyConfig.make(unit='axons')
    assert UNITS['attention-layers'] is LAYERS and StudyConfig.make(unit='attention-layers').unit == 'attention-layers'

def test_importance_through_a_new_units_gate_is_the_chain_rule_over_its_heads():
    "∂L/∂ξ_l = Σ_h ∂L/∂ξ_{l,h} when every head of layer l is gated by ξ_l: per example, by autograd through the heads' gate."
    model, ds = make_tiny_model(), make_ds(6)
    got = importance(model, ds, normalize=False, unit=LAYERS)                         # (L, 1)
    per = []
    for i in range(len(ds)):
        one = ds.select([i])
        xi = torch.ones(2, 4, requires_grad=True)
        with HeadGate(model, xi):
            out = model(input_ids=torch.tensor(one['input_ids']), attention_mask=torch.tensor(one['attention_mask']))
            (g,) = torch.autograd.grad(cross_entropy(out.logits, torch.tensor(one['label']), reduction='sum'), xi)
        per.append(g.sum(1, keepdim=True).abs())                                       # |Σ_h ∂L_i/∂ξ_{l,h}|
    assert got.shape == (2, 1)
    torch.testing.assert_close(got, torch.stack(per).mean(0), rtol=1e-5, atol=1e-7)

def test_pruning_and_find_subnetworks_give_masks_of_the_unit():
    model, ds = make_tiny_model(), make_ds(12)
    xi, traj = prune(model, ds.select(range(6)), threshold=0.01, unit=LAYERS)
    assert xi.shape == (2, 1) and [t['n_disabled'] for t in traj][:2] == [0, 1]       # one layer per round (`per_round`)
    masks, _ = find_subnetworks(model, ds, threshold=0.01, unit=LAYERS)
    assert isinstance(masks, Masks) and masks.unit is LAYERS and masks.shape == (2, 1) and list(masks) == ['en', 'fr']

def test_predictions_and_sketches_under_unit_masks_equal_those_under_the_same_heads():
    model, ds = make_tiny_model(), make_ds(8)
    lay = Masks({'en': torch.tensor([[1.], [0.]]), 'fr': torch.tensor([[0.], [1.]])}, (2, 1), LAYERS)
    heads = Masks({l: as_heads(x) for l, x in lay.items()}, (2, 4))
    pd.testing.assert_frame_equal(predict(model, ds, lay, progress=False), predict(model, ds, heads, progress=False))
    with Sketcher(model, d=16) as sk: a = torch.cat([S for _, S, _, _ in iter_sketches(sk, ds, lay, 4, progress=False)])
    with Sketcher(model, d=16) as sk: b = torch.cat([S for _, S, _, _ in iter_sketches(sk, ds, heads, 4, progress=False)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ModelError, match='hold attention-layers masks of shape \\(2, 1\\); this model needs \\(2, 4\\)'):
        check_masks(lay, (2, 4))

def test_sft_through_unit_masks_freezes_what_its_rule_says_and_trains_like_the_same_heads(tmp_path):
    "The freeze rule of the unit: the same weights as SFT through the equivalent head masks, the disabled layer untouched."
    ds = make_ds(16)
    lay = Masks({'en': torch.tensor([[1.], [0.]]), 'fr': torch.tensor([[1.], [0.]])}, (2, 1), LAYERS)
    heads = {l: as_heads(x) for l, x in lay.items()}
    start = make_tiny_model()
    runs = {}
    for name, masks in (('layers', lay), ('heads', heads)):
        m = make_tiny_model()
        finetune(m, None, {'train': ds}, tmp_path/name, lr=1e-2, epochs=1, batch_size=4, masks=masks, progress=False)
        runs[name] = dict(m.named_parameters())
    for n, p in runs['layers'].items(): torch.testing.assert_close(p, runs['heads'][n], rtol=0, atol=0)
    q = 'roberta.encoder.layer.1.attention.self.query.weight'
    assert torch.equal(runs['layers'][q], dict(start.named_parameters())[q])                   # layer 1 disabled: frozen
    assert not torch.equal(runs['layers'][q.replace('layer.1', 'layer.0')], dict(start.named_parameters())[q.replace('layer.1', 'layer.0')])
    assert json.loads((tmp_path/'layers'/'run.json').read_text())['unit'] == 'attention-layers'

def test_masks_are_checked_once_where_they_enter(monkeypatch, tmp_path):
    "A dict is checked value by value once (by finetune, where it enters); the `Masks` it becomes is never checked again."
    calls = []
    check = units.check_mask
    monkeypatch.setattr(units, 'check_mask', lambda xi, *a, **k: (calls.append(k.get('name')) if k.get('binary') else None, check(xi, *a, **k))[1])
    ds = make_ds(16)
    xi = {'en': torch.ones(2, 4), 'fr': torch.tensor([[1., 0, 1, 1], [1, 1, 1, 1]])}
    finetune(make_tiny_model(), None, {'train': ds, 'dev': ds}, tmp_path/'sft', lr=1e-2, epochs=2, batch_size=4, masks=xi, progress=False)
    assert len(calls) == 2, calls                                     # en, fr: once, though every epoch evaluates under them
    masks = Masks(xi, (2, 4)); calls.clear()
    model = make_tiny_model()
    predict(model, ds, masks, progress=False)
    with Sketcher(model, d=16) as sk: list(iter_sketches(sk, ds, masks, 4, progress=False))
    save_masks(tmp_path/'m.json', masks)
    assert calls == []

def test_mask_files_record_their_unit_and_a_study_refuses_a_file_of_another_unit(tmp_path, tiny_folder, shared_data):
    langs = ['en', 'fr', 'de', 'ko', 'es']
    f = save_masks(tmp_path/'layers.json', Masks({l: torch.ones(2, 1) for l in langs}, (2, 1), LAYERS))
    doc = json.loads(f.read_text())
    assert (doc['unit'], doc['n_layers'], doc['n_attention-layers']) == ('attention-layers', 2, 1)
    assert load_masks(f).unit is LAYERS
    heads = save_masks(tmp_path/'heads.json', {l: torch.ones(2, 4) for l in langs})
    assert 'unit' not in json.loads(heads.read_text()) and load_masks(heads).unit is HEADS   # head mask files are as they always were
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    with pytest.raises(OptionError, match="masks .*layers.json holds attention-layers masks, but the study's --unit is heads"):
        prepare(StudyConfig.make(**c, masks=str(f)), log=lambda *a: None)

def test_a_whole_study_runs_on_a_registered_unit(tmp_path, tiny_folder, shared_data):
    "The slot end to end: prune, SFT, sketch and results with the toy unit; masks.json and every stage say which unit."
    st = run_study(**kw(tiny_folder, shared_data, tmp_path), unit='attention-layers', check_estimator=0, layer_groups=False)
    run = tmp_path/'pawsx'
    xi = load_masks(run/'masks.json')
    assert xi.unit is LAYERS and xi.shape == (2, 1)
    rec = json.loads((run/'study.json').read_text())
    assert rec['settings']['unit'] == 'attention-layers'
    prune = json.loads((run/rec['stages']['prune']/'stage.json').read_text())['key']
    assert prune['unit'] == 'attention-layers'
    assert (run/'figures'/'table1_attention-layers_disabled.csv').exists() and isinstance(Study.load(run).masks, Masks)
    assert st.masks.unit is LAYERS


# ---- neurons (issue 19's unit): every check against a computation of the test's own ----
FAMILIES = {'xlmr': {}, 'bert': {}, 'distilbert': {}, 'deberta-v2': {}, 'llama': {}, 'qwen2': dict(kv_heads=2), 'gpt-neox': {}, 'bloom': {}}

class ZeroActivation:
    "The test's own hook: set neuron j of layer l's FFN activation to zero (or scale it by a tensor) by hand."
    def __init__(self, model, l, scale): self.W, self.scale = ffn_output(model, l), scale
    def __enter__(self):
        self.h = self.W.register_forward_pre_hook(lambda mod, args: (args[0] * self.scale,)); return self
    def __exit__(self, *exc): self.h.remove()

@pytest.mark.parametrize('family', FAMILIES)
def test_the_neuron_gate_is_the_model_at_ones_and_zeroing_by_hand_at_zero(family):
    m = toy_classifier(family=family, **FAMILIES[family]); x = torch.randint(3, 50, (3, 7))
    L, n = neuron_shape(m)
    plain = m(x).logits
    with NEURONS.gate(m, torch.ones(L, n)): assert torch.equal(m(x).logits, plain)
    xi = torch.ones(L, n); xi[L - 1, [0, 5]] = 0
    keep = torch.ones(n); keep[[0, 5]] = 0
    with NEURONS.gate(m, xi): gated = m(x).logits
    with ZeroActivation(m, L - 1, keep): by_hand = m(x).logits
    torch.testing.assert_close(gated, by_hand, rtol=0, atol=1e-7)
    assert not torch.allclose(gated, plain)

@pytest.mark.parametrize('family', ['xlmr', 'llama'])
def test_neuron_importance_is_the_gradient_through_an_explicit_gate_of_our_own(family):
    model, ds = toy_classifier(family=family), make_ds(6)
    got = importance(model, ds, normalize=False, unit=NEURONS)
    L, n = neuron_shape(model)
    per = []
    for i in range(len(ds)):
        one = ds.select([i])
        gates = [torch.ones(n, requires_grad=True) for _ in range(L)]
        hooks = [ffn_output(model, l).register_forward_pre_hook(lambda mod, args, g=g: (args[0] * g,)) for l, g in enumerate(gates)]
        try:
            out = model(input_ids=torch.tensor(one['input_ids']), attention_mask=torch.tensor(one['attention_mask']))
            gs = torch.autograd.grad(cross_entropy(out.logits, torch.tensor(one['label']), reduction='sum'), gates)
        finally:
            for h in hooks: h.remove()
        per.append(torch.stack(gs).abs())
    torch.testing.assert_close(got, torch.stack(per).mean(0), rtol=1e-5, atol=1e-8)

@pytest.mark.parametrize('family', ['xlmr', 'llama', 'bloom'])
def test_sft_through_a_neuron_mask_leaves_disabled_neurons_and_their_adamw_state_unchanged_at_every_step(family):
    from accelerate import Accelerator
    model = toy_classifier(family=family); model.train()
    L, n = neuron_shape(model)
    xi = torch.ones(L, n); xi[0, :n // 2] = 0; xi[1, [1, 2]] = 0
    frozen = frozen_entries(model, xi, NEURONS)
    owned = {}                                                      # the test's own list of what a disabled neuron owns
    for l in range(L):
        off = xi[l] == 0
        lay = [p for p in model.modules() if p is ffn_output(model, l)][0]
        owned[lay.weight] = off[None, :].expand_as(lay.weight)
    assert all(torch.equal(m, owned[p]) for p, m in frozen if p in owned) and sum(p in owned for p, _ in frozen) == L
    before = {p: p.detach().clone() for p, _ in frozen}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    acc = Accelerator(cpu=True)
    ds = make_ds(8)
    for step in range(3):
        batch = next(iter(example_loader(ds, model.config.pad_token_id, 8))); batch.pop('lang_id')
        with NEURONS.gate(model, xi): train_step(model, batch, opt, acc, frozen=frozen)
        for p, m in frozen:
            assert torch.equal(p.detach()[m], before[p][m]), f'a disabled neuron moved at step {step}'
            assert not torch.equal(p.detach()[~m], before[p][~m]), 'enabled neurons must train'
            st = opt.state[p]
            assert (st['exp_avg'][m] == 0).all() and (st['exp_avg_sq'][m] == 0).all()

def test_neuron_pruning_disables_one_percent_of_the_remaining_ones_per_round():
    model = toy_classifier(hidden=64)                               # 2 x 128 neurons: 1% of 256 is 3, then fewer
    ds = make_ds(6)
    xi, traj = prune(model, ds, threshold=0.01, unit=NEURONS)
    nd = [t['n_disabled'] for t in traj]
    assert nd[:3] == [0, 3, 6] and xi.shape == (2, 128)            # round(0.01 * 256) = 3, round(0.01 * 253) = 3, ...
    steps = [b - a for a, b in zip(nd, nd[1:])]
    assert steps == [max(1, round(0.01 * (256 - a))) for a in nd[:-1]] and steps == sorted(steps, reverse=True)

def test_a_whole_study_on_neurons(tmp_path, tiny_folder, shared_data):
    run_study(**kw(tiny_folder, shared_data, tmp_path), unit='neurons', check_estimator=0, layer_groups=False)
    run = tmp_path/'pawsx'
    xi = load_masks(run/'masks.json')
    assert xi.unit is NEURONS and xi.shape == (2, 32) and json.loads((run/'masks.json').read_text())['n_neurons'] == 32
    usage = pd.read_csv(run/'figures'/'fig11_neuron_usage.csv')                 # each mask result named by its unit
    assert list(usage.columns) == ['layer', 'neuron', 'n_langs'] and len(usage) == 64
    assert {'table1_neurons_disabled.csv', 'fig12_shared_neurons.csv', 'fig13_shared_neurons_share.csv'} <= {f.name for f in (run/'figures').iterdir()}
    assert not list((run/'figures').glob('*head*'))
    st = Study.load(run)
    assert st.plot('fig11_head_usage').axes[0].get_title() == 'Languages using each neuron'
    assert st.plot('table1_heads_disabled').equals(st.plot('table1_neurons_disabled'))      # the paper's names work too

# ---- LAPE (Tang et al. 2024) as the second selection rule ----
from modtrace.subnetworks import activation_probability, lape_masks, lape_specific

def test_lape_picks_the_neurons_a_hand_made_activation_table_says():
    "3 languages, 2 x 10 neurons: (0,0) fires for en only, (1,3) for fr only, (1,7) for en and fr; the rest uniformly."
    P = torch.full((2, 10, 3), 0.5)
    P[0, 0] = torch.tensor([0.9, 0.02, 0.01]); P[1, 3] = torch.tensor([0.01, 0.95, 0.02]); P[1, 7] = torch.tensor([0.97, 0.96, 0.0])
    P[0, 9] = torch.tensor([0.2, 0.0, 0.0])          # lowest entropy of all (fires for en alone) but rarely: filtered out
    spec = lape_specific(P, top_rate=0.2, filter_rate=0.9, bar_rate=0.9)
    assert sorted(map(tuple, spec.nonzero().tolist())) == [(0, 0, 0), (1, 3, 1), (1, 7, 0), (1, 7, 1)]
    m = lape_masks(P, ['en', 'fr', 'de'], top_rate=0.2, filter_rate=0.9, bar_rate=0.9)
    off = {l: sorted(map(tuple, (x == 0).nonzero().tolist())) for l, x in m.items()}
    assert off == {'en': [(1, 3)], 'fr': [(0, 0)], 'de': [(0, 0), (1, 3), (1, 7)]} and m.unit is NEURONS

@pytest.mark.parametrize('family', ['xlmr', 'llama'])
def test_activation_probability_counts_each_languages_real_tokens_as_a_loop_by_hand_does(family):
    "Encoders: the down projection's input > 0; gated FFNs (Llama): SiLU of the gate projection > 0, as Tang et al. count it."
    model, ds = toy_classifier(family=family), make_ds(8)
    got = activation_probability(model, ds, ['en', 'fr'], batch_size=3)          # padded batches
    L, n = neuron_shape(model)
    fired, tokens = torch.zeros(L, n, 2), torch.zeros(2)
    for r in ds:
        acts = []
        if family == 'llama':
            hs = [model.model.layers[l].mlp.gate_proj.register_forward_hook(lambda mod, a, o, acts=acts: acts.append(torch.nn.functional.silu(o[0])))
                  for l in range(L)]
        else: hs = [ffn_output(model, l).register_forward_pre_hook(lambda mod, a, acts=acts: acts.append(a[0][0])) for l in range(L)]
        try: model(input_ids=torch.tensor([r['input_ids']]))                    # one sentence, unpadded
        finally:
            for h in hs: h.remove()
        k = ['en', 'fr'].index(r['lang'])
        fired[..., k] += torch.stack([(a > 0).float().sum(0) for a in acts]); tokens[k] += len(r['input_ids'])
    torch.testing.assert_close(got, fired / tokens, rtol=0, atol=1e-6)

def test_lape_is_refused_for_heads_and_with_a_mask_file():
    with pytest.raises(OptionError, match='add --unit neurons|add unit'): StudyConfig.make(select='lape')
    with pytest.raises(OptionError, match='choose one'): StudyConfig.make(select='lape', unit='neurons', masks='random')

def test_a_whole_study_on_lape_neurons(tmp_path, tiny_folder, shared_data):
    run_study(**kw(tiny_folder, shared_data, tmp_path), unit='neurons', select='lape', check_estimator=0, layer_groups=False)
    run = tmp_path/'pawsx'
    rec = json.loads((run/'study.json').read_text())
    assert rec['stages']['lape'].startswith('lape-') and 'prune' not in rec['stages']
    assert (run/rec['stages']['lape']/'activation_probability.pt').exists()
    assert load_masks(run/'masks.json').unit is NEURONS and (run/'figures'/'fig10_full_positive.csv').exists()

def test_a_unit_sent_to_a_worker_is_the_registered_one_and_errors_use_its_words():
    import pickle
    m = Masks({'en': torch.ones(2, 32)}, (2, 32), NEURONS)
    back = pickle.loads(pickle.dumps(m))
    assert back.unit is NEURONS and pickle.loads(pickle.dumps(LAYERS)) is LAYERS
    with pytest.raises(ModelError, match=r"needs \(layers, neurons\) = \(2, 32\)"): Masks({'en': torch.ones(2, 4)}, (2, 32), NEURONS)
    with pytest.raises(ModelError, match='enables no neuron'): Masks({'en': torch.zeros(2, 32)}, (2, 32), NEURONS)
    with pytest.raises(ValueError, match=r'fraction must lie in \(0, 1\]'): prune(make_tiny_model(), make_ds(6), fraction=0, unit=NEURONS)
