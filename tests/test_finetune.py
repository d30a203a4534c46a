"Full fine-tuning and sparse fine-tuning (SPEC sections 2 and 4): checkpoints, resume, no recompute, frozen heads."
import copy, json
import numpy as np
import pytest, torch
from datasets import Dataset
from accelerate import Accelerator
from conftest import make_tiny_model
import modtrace.finetune as ft
from modtrace.batching import pad_collator, LanguageBatches, EpochBatches
from modtrace.finetune import (finetune, evaluate, predict, accuracy_table, frozen_entries, step_frozen, train_step,
                               complete_epochs)
from modtrace.model import encoder_layers
from modtrace.units import head_gate

L, H, HID = 2, 4, 32
DH = HID // H

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "Tiny models: one thread avoids oversubscribing a shared machine (10-100x faster here)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def model(seed=0): return make_tiny_model(hidden=HID, vocab=100, seed=seed)

def toy(n_per_lang=16, langs=('xx', 'yy'), seed=0):
    "Token-id examples; the label is the first word (10 or 11); each language has its own other words."
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ('id', 'lang', 'label', 'input_ids', 'attention_mask')}
    for li, lang in enumerate(langs):
        for i in range(n_per_lang):
            y, n = int(rng.integers(2)), int(rng.integers(3, 9))
            ids = [0, 10 + y] + rng.integers(20 + 20*li, 40 + 20*li, n).tolist() + [2]
            for k, v in zip(rows, (f'{i}', lang, y, ids, [1]*len(ids))): rows[k].append(v)
    return Dataset.from_dict(rows)

def splits(n=32): return {'train': toy(n), 'dev': toy(8, seed=1), 'test': toy(8, seed=2)}

MASKS = {'xx': torch.tensor([[1., 0, 1, 1], [1, 1, 1, 0]]), 'yy': torch.tensor([[1., 1, 0, 1], [0, 1, 1, 1]])}

def head_slices(m, l, h):
    "Every weight entry of head (l, h): its rows of W_Q, W_K, W_V (+ biases) and its columns of W_O."
    att = encoder_layers(m)[l].attention; r = slice(h*DH, (h+1)*DH)
    out = {f'{n}.{k}': getattr(getattr(att.self, n), k)[r] for n in ('query', 'key', 'value') for k in ('weight', 'bias')}
    out['W_O'] = att.output.dense.weight[:, r]
    return {k: v.detach().clone() for k, v in out.items()}

# ---------------------------------------------------------------- full fine-tuning
def test_full_ft_learns_and_loss_falls(tmp_path):
    m = model()
    before = evaluate(m, toy(32, seed=2), progress=False)
    res = finetune(m, None, splits(64), tmp_path, lr=3e-3, epochs=3, batch_size=8, progress=False)
    losses = [e['train_loss'] for e in res.results['epochs']]
    assert losses[-1] < losses[0] * 0.5, losses
    assert res.accuracy('test')['all'] >= 0.9 and before['all'] < 0.9, (before, res.accuracy('test'))
    assert res.results['mode'] == 'full'
    assert evaluate(res.model, toy(8, seed=2), progress=False) == res.accuracy('test')   # model holds the last epoch

def test_checkpoint_per_epoch_with_state_and_tokenizer(tmp_path, tiny_tokenizer):
    "Raw-text splits tokenized with the model's tokenizer; every epoch a complete, loadable checkpoint."
    words = {'xx': 'the cat sat on a mat'.split(), 'yy': 'le chat der hund el perro'.split()}
    rng = np.random.default_rng(0)
    def raw(n):
        rows = []
        for lang, ws in words.items():
            for i in range(n):
                y = int(rng.integers(2))
                rows.append({'id': str(i), 'lang': lang, 'text': ' '.join(['dog' if y else 'ran'] + list(rng.choice(ws, 4))),
                             'text_pair': '', 'label': y, 'orig_label': y})
        return Dataset.from_list(rows)
    m = make_tiny_model(hidden=HID, vocab=len(tiny_tokenizer))
    res = finetune(m, tiny_tokenizer, {'train': raw(16), 'test': raw(4)}, tmp_path, lr=1e-3, epochs=2, batch_size=8,
                   schedule='linear', progress=False)
    assert [p.name for p in res.checkpoints] == ['epoch-1', 'epoch-2'] == [f'epoch-{e}' for e in complete_epochs(tmp_path)]
    for e, ck in enumerate(res.checkpoints, 1):
        st = json.loads((ck/'state.json').read_text())
        assert {'epoch', 'lr', 'global_step', 'seed', 'masks', 'test'} <= set(st)
        assert (st['epoch'], st['global_step'], st['seed'], st['masks']) == (e, 4 * e, 0, None)
        assert 0 < st['lr'] < 1e-3 and st['lr_first'] == 1e-3 * (1 - (e - 1) / 2)   # linear decay, mean lr of the epoch
        assert (ck/'model.safetensors').exists() and (ck/'tokenizer.json').exists()
        assert set(st['test']) == {'xx', 'yy', 'all'}
    assert not (res.checkpoints[-1]/'resume').exists()           # a finished run keeps no optimizer state
    loaded = type(m).from_pretrained(res.checkpoints[-1])
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), res.model.state_dict().values()))
    tab = accuracy_table(res.results)
    assert list(tab.columns) == ['epoch', 'split', 'lang', 'accuracy'] and len(tab) == 2 * 3

class Killed(Exception): pass

@pytest.mark.parametrize('masks', [None, MASKS], ids=['full', 'sft'])
def test_resume_after_kill_equals_uninterrupted(tmp_path, masks):
    kw = dict(lr=3e-3, epochs=2, batch_size=8, masks=masks, progress=False)
    ref = finetune(model(), None, splits(), tmp_path/'ref', **kw).model
    def kill(info, m):
        if info['epoch'] == 2 and info['step'] == 10: raise Killed()
    with pytest.raises(Killed): finetune(model(), None, splits(), tmp_path/'run', on_step=kill, **kw)
    assert complete_epochs(tmp_path/'run') == [1] and not (tmp_path/'run'/'DONE').exists()
    (tmp_path/'run'/'.epoch-2.tmp').mkdir()                       # a half-written checkpoint is ignored
    steps = []
    res = finetune(model(), None, splits(), tmp_path/'run', on_step=lambda i, m: steps.append(i['step']), **kw)
    assert steps == list(range(9, 17))                            # only epoch 2 was trained again
    for (n, a), b in zip(ref.state_dict().items(), res.model.state_dict().values()): assert torch.equal(a, b), n
    assert [e['epoch'] for e in res.results['epochs']] == [1, 2]

def test_finished_run_is_not_recomputed(tmp_path, monkeypatch):
    kw = dict(lr=3e-3, epochs=1, batch_size=8, progress=False)
    res = finetune(model(), None, splits(), tmp_path, **kw)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
    monkeypatch.setattr(ft, '_run', lambda *a, **k: pytest.fail('a finished run was recomputed'))
    again = finetune(model(), None, splits(), tmp_path, **kw)
    assert again.results == res.results
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')} == files
    assert torch.equal(again.model.classifier.out_proj.weight, res.model.classifier.out_proj.weight)
    with pytest.raises(ValueError, match='batch_size differ'): finetune(model(), None, splits(), tmp_path, **{**kw, 'batch_size': 4})

def test_a_finished_run_is_not_returned_for_another_model_or_other_examples(tmp_path):
    "The folder's run started from other weights, or trained on other examples of the same number: refused, not returned."
    kw = dict(lr=3e-3, epochs=1, batch_size=8, progress=False)
    finetune(model(), None, splits(), tmp_path, **kw)
    with pytest.raises(ValueError, match=r'\(init differ\)'): finetune(model(seed=5), None, splits(), tmp_path, **kw)
    flipped = {**splits(), 'train': splits()['train'].map(lambda r: {'label': 1 - r['label']})}
    with pytest.raises(ValueError, match=r'\(train differ\)'): finetune(model(), None, flipped, tmp_path, **kw)
    assert json.loads((tmp_path/'run.json').read_text())['n_train'] == len(flipped['train'])   # (the same number of examples)

def test_a_run_folder_of_an_older_modtrace_is_one_clear_error(tmp_path):
    "run.json without the hashes (written before they were recorded): said, not reported as changed settings."
    kw = dict(lr=3e-3, epochs=1, batch_size=8, progress=False)
    finetune(model(), None, splits(), tmp_path, **kw)
    old = {k: v for k, v in json.loads((tmp_path/'run.json').read_text()).items() if k not in ('init', 'train')}
    (tmp_path/'run.json').write_text(json.dumps(old))
    with pytest.raises(ValueError, match='older modtrace'): finetune(model(), None, splits(), tmp_path, **kw)

def test_the_examples_hash_takes_any_column_type():
    import datetime
    tr = splits()['train']; ds = tr.add_column('when', [datetime.date(2026, 1, 1 + i % 28) for i in range(len(tr))])
    assert ft._examples_hash(ds) == ft._examples_hash(ds) != ft._examples_hash(tr)

# ---------------------------------------------------------------- sparse fine-tuning
def test_sft_disabled_heads_unchanged_at_every_step_enabled_ones_move(tmp_path):
    m = model()
    prev = {'m': copy.deepcopy(m)}
    checked = []
    def check(info, cur):
        xi, old = MASKS[info['lang']], prev['m']
        for l in range(L):
            for h in range(H):
                a, b = head_slices(old, l, h), head_slices(cur, l, h)
                if xi[l, h] == 0: assert all(torch.equal(a[k], b[k]) for k in a), (info, l, h)
                else: assert all(not torch.equal(a[k], b[k]) for k in a if k.endswith('weight') or k == 'W_O'), (info, l, h)
        ffn_old, ffn_new = old.roberta.encoder.layer[0].intermediate.dense.weight, cur.roberta.encoder.layer[0].intermediate.dense.weight
        assert not torch.equal(ffn_old, ffn_new)                  # shared parameters are updated
        prev['m'] = copy.deepcopy(cur); checked.append(info['lang'])
    res = finetune(m, None, splits(), tmp_path, lr=3e-3, epochs=2, batch_size=8, masks=MASKS, weight_decay=0.1,
                   progress=False, on_step=check)
    assert sorted(checked) == ['xx'] * 8 + ['yy'] * 8             # equally often
    assert len(set(checked[:8])) == 2                            # and interleaved, not one language after the other
    assert res.results['mode'] == 'sft' and json.loads((res.checkpoints[0]/'state.json').read_text())['masks'] == \
        {l: v.tolist() for l, v in MASKS.items()}

def test_step_frozen_keeps_params_and_adam_state_naive_zero_grad_does_not():
    "Footnote 1's gradient masking lets AdamW move a disabled head (momentum, decay); step_frozen does not."
    acc = Accelerator()
    batch = pad_collator()([{'input_ids': r['input_ids'], 'attention_mask': r['attention_mask'], 'labels': r['label']}
                            for r in toy(4)])
    xi = MASKS['xx']
    def run(frozen_step):
        m = model(); opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
        m, opt = acc.prepare(m, opt); m.train()
        train_step(m, batch, opt, acc)                           # step 1: all heads on, momentum builds up
        fz = frozen_entries(m, xi)
        state0 = {id(p): {k: v.clone() for k, v in opt.optimizer.state[p].items()} for p, _ in fz}
        before = {id(p): p.detach().clone() for p, _ in fz}
        with head_gate(m, xi):
            if frozen_step: train_step(m, batch, opt, acc, frozen=fz)
            else:                                                 # naive: zero the gradients, ordinary step
                m(**batch).loss.backward()
                for p, mk in fz: p.grad[mk] = 0
                opt.step(); opt.zero_grad()
        same = all(torch.equal(p[mk], before[id(p)][mk]) for p, mk in fz)
        same_state = all(torch.equal(opt.optimizer.state[p][k][mk], state0[id(p)][k][mk])
                         for p, mk in fz for k in ('exp_avg', 'exp_avg_sq'))
        moved = all(not torch.equal(p[~mk], before[id(p)][~mk]) for p, mk in fz if p.dim() == 2)
        return same, same_state, moved
    assert run(frozen_step=True) == (True, True, True)
    assert run(frozen_step=False)[:2] == (False, False)

def test_step_frozen_first_step_leaves_state_at_init():
    p = torch.nn.Parameter(torch.ones(4, 3)); mk = torch.zeros(4, 3, dtype=torch.bool); mk[1] = True
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.ones(4, 3)
    step_frozen(opt, [(p, mk)])
    assert torch.equal(p[1], torch.ones(3)) and not torch.equal(p[0], torch.ones(3))
    assert torch.equal(opt.state[p]['exp_avg'][1], torch.zeros(3)) and torch.equal(opt.state[p]['exp_avg_sq'][1], torch.zeros(3))

def test_language_batches_homogeneous_equal_counts_random_order():
    langs = ['a'] * 20 + ['b'] * 13 + ['c'] * 16
    lb = LanguageBatches(langs, batch_size=4, seed=1)
    orders = []
    for e in range(3):
        lb.set_epoch(e)
        steps = lb.steps()
        k = 4                                                     # min ceil(n / 4) = ceil(13 / 4)
        assert sorted(l for l, _ in steps) == ['a'] * k + ['b'] * k + ['c'] * k
        for l, (b,) in steps: assert {langs[i] for i in b} == {l}
        used = [i for _, (b,) in steps for i in b]
        assert len(used) == len(set(used))                         # no example twice in an epoch
        assert {i for i in used if langs[i] == 'b'} == set(range(20, 33))  # the smallest language is used whole
        orders.append([l for l, _ in steps])
    assert orders[0] != orders[1]                                  # a new random order every epoch
    g = LanguageBatches(langs, batch_size=4, seed=1, group=2)       # 2 processes: pairs of batches of one language
    assert len(g) == 12 and all(len(bs) == 2 and {langs[i] for b in bs for i in b} == {l} for l, bs in g.steps())
    assert sorted(sum(list(EpochBatches(10, 3)), [])) == list(range(10))

# ---------------------------------------------------------------- evaluation
def test_evaluate_under_mask_equals_zeroed_output_columns():
    m, ds = model(), toy(8)
    xi = MASKS['xx']
    m0 = copy.deepcopy(m)
    with torch.no_grad():
        for l, h in (xi == 0).nonzero().tolist():
            encoder_layers(m0)[l].attention.output.dense.weight[:, h*DH:(h+1)*DH] = 0
    a, b = predict(m, ds, xi, batch_size=5, progress=False), predict(m0, ds, progress=False)
    torch.testing.assert_close(torch.tensor(a['loss'].values), torch.tensor(b['loss'].values), rtol=0, atol=1e-5)
    assert (a['pred'] == b['pred']).all()
    assert evaluate(m, ds, xi, progress=False) == evaluate(m0, ds, progress=False)
    per_lang = predict(m, ds, {'xx': xi, 'yy': torch.ones(L, H)}, progress=False)   # each language its own mask
    plain = predict(m, ds, progress=False)
    assert np.allclose(per_lang['loss'][8:], plain['loss'][8:], atol=1e-6) and np.allclose(per_lang['loss'][:8], a['loss'][:8], atol=1e-6)

def test_predict_per_example_loss_and_accuracy():
    m, ds = model(), toy(6)
    p = predict(m, ds, batch_size=4, progress=False)
    assert list(p.columns) == ['id', 'lang', 'label', 'pred', 'loss', 'correct'] and list(p['lang']) == list(ds['lang'])
    with torch.no_grad():
        x = ds[0]; logits = m(input_ids=torch.tensor([x['input_ids']])).logits
    assert abs(p['loss'][0] - torch.nn.functional.cross_entropy(logits, torch.tensor([x['label']])).item()) < 1e-5
    acc = evaluate(m, ds, progress=False)
    assert acc['all'] == p['correct'].mean() and list(acc) == ['xx', 'yy', 'all']

def test_pad_collator_equals_tokenizer_padding_and_derives_the_attention_mask(tiny_tokenizer):
    from transformers import DataCollatorWithPadding
    rows = [{'input_ids': [0, 7, 8, 2], 'attention_mask': [1] * 4, 'labels': 1}, {'input_ids': [0, 2], 'attention_mask': [1, 1], 'labels': 0}]
    a, b = DataCollatorWithPadding(tiny_tokenizer)(copy.deepcopy(rows)), pad_collator(pad_token_id=tiny_tokenizer.pad_token_id)(rows)
    assert all(torch.equal(a[k], b[k]) for k in ('input_ids', 'attention_mask', 'labels'))
    c = pad_collator(pad_token_id=tiny_tokenizer.pad_token_id)([{k: v for k, v in r.items() if k != 'attention_mask'} for r in rows])
    assert torch.equal(c['attention_mask'], b['attention_mask'])                 # no attention_mask column: from each row's length

# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('kw,match', [
    (dict(lr=0), 'lr must be > 0'),
    (dict(lr=-1e-5), 'lr must be > 0'),
    (dict(epochs=0), 'epochs must be an integer >= 1'),
    (dict(masks={'xx': MASKS['xx']}), r"no mask for language\(s\) \['yy'\]"),
    (dict(masks={'xx': torch.ones(3, 4), 'yy': torch.ones(3, 4)}), r"the mask for 'xx' has shape \(3, 4\).*\(layers, heads\) = \(2, 4\)"),
    (dict(masks={'xx': MASKS['xx'] * 0.5, 'yy': MASKS['yy']}), 'only 0s and 1s'),
])
def test_bad_input_one_clear_error(tmp_path, kw, match):
    args = dict(lr=1e-3, epochs=1, batch_size=8, progress=False) | kw
    with pytest.raises(ValueError, match=match): finetune(model(), None, splits(8), tmp_path/'r', **args)
    assert not (tmp_path/'r').exists()                             # nothing half-written

def test_untokenized_split_without_tokenizer_is_an_error(tmp_path):
    raw = Dataset.from_dict({'id': ['0'], 'lang': ['xx'], 'text': ['a'], 'text_pair': [''], 'label': [0]})
    with pytest.raises(ValueError, match='not tokenized'): finetune(model(), None, {'train': raw}, tmp_path, lr=1e-3, epochs=1)

# ---------------------------------------------------------------- with modtrace.data
def test_sft_on_real_pawsx_splits_from_load_splits(shared_data, tiny_tokenizer, tmp_path):
    "Raw splits straight from `load_splits` (all standard columns), tokenized inside `finetune`, one language per step."
    from modtrace.data import load_splits
    sp = load_splits('pawsx', langs=['en', 'ko'], n_train=16, n_dev=4, n_test=4, data=shared_data)
    masks = {'en': MASKS['xx'], 'ko': MASKS['yy']}
    seen = []
    res = finetune(make_tiny_model(hidden=HID, vocab=len(tiny_tokenizer)), tiny_tokenizer, sp, tmp_path, lr=1e-3, epochs=1,
                   batch_size=4, masks=masks, progress=False, on_step=lambda i, m: seen.append(i['lang']))
    assert sorted(seen) == ['en'] * 4 + ['ko'] * 4
    assert set(res.accuracy('dev')) == set(res.accuracy('test_full')) == {'en', 'ko', 'all'}
