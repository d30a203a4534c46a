"""local_model: a small model of every family with a byte-level BPE tokenizer trained on real task texts (XNLI en/de/ru,
PAWS-X Korean, MARC Chinese), loaded by modtrace.model, padded on the right, cached, and refused when a setting is bad."""
import json
import pytest, torch
import modtrace.local as D
from modtrace.core import BUILDS
from modtrace.data import load_task, tokenize
from modtrace.local import local_model, local_model_spec, train_bpe_tokenizer, train_tokenizer
from modtrace.model import ModelError, check_padding, load_classifier, load_tokenizer, model_family, model_shape
from modtrace.units import kv_groups

TINY = dict(layers=2, heads=4, hidden=16, vocab_size=500, max_length=64)
CASES = {'xlmr': {}, 'bert': {}, 'distilbert': {}, 'deberta-v2': {}, 'llama': {}, 'llama-gqa': dict(kv_heads=2),
         'gpt-neox': {}, 'bloom': {}}
TYPES = {'xlmr': 'XLMRoberta', 'bert': 'Bert', 'distilbert': 'DistilBert', 'deberta-v2': 'DebertaV2', 'llama': 'Llama',
         'llama-gqa': 'Llama', 'gpt-neox': 'GPTNeoX', 'bloom': 'Bloom'}

def texts_of(ds, pairs=False) -> list:
    "A split's texts: (text, text_pair) pairs, or every non-empty text."
    if pairs: return list(zip(ds['text'], ds['text_pair']))
    return [t for r in zip(ds['text'], ds['text_pair']) for t in r if t]

@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch(); mp.setenv('MODTRACE_CACHE', str(tmp_path_factory.mktemp('local-cache')))
    yield
    mp.undo()

@pytest.fixture(scope='module')
def xnli(shared_data):
    "XNLI en/de/ru from the dev-drawn training files (Russian has no other): 200 train pairs and 6 test rows per language."
    sf = {'train': 'train_from_dev'}
    train = load_task('xnli', 'train', langs=['en', 'de', 'ru'], data=shared_data, split_files=sf)
    test = load_task('xnli', 'test', langs=['en', 'de', 'ru'], data=shared_data)
    pick = lambda ds, n: ds.select([i for l in ('en', 'de', 'ru') for i in [j for j, x in enumerate(ds['lang']) if x == l][:n]])
    return texts_of(pick(train, 200), pairs=True), pick(test, 6)

@pytest.fixture(scope='module')
def built(cache, xnli):
    "One tiny random-init model of each family, built from the XNLI training pairs."
    return {c: local_model(c.removesuffix('-gqa'), xnli[0], **TINY, **kw) for c, kw in CASES.items()}

# --- every family ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('case', list(CASES))
def test_family_loads_classifies_and_pads_right(case, built, xnli):
    p, test = built[case], xnli[1]
    clf, tok = load_classifier(p, num_labels=3), load_tokenizer(p)
    check_padding(clf, tok)
    assert type(clf).__name__ == TYPES[case] + 'ForSequenceClassification'
    assert model_family(clf).name == case.removesuffix('-gqa') and model_shape(clf) == (2, 4)
    assert kv_groups(clf) == ([(0, 1), (2, 3)] if case == 'llama-gqa' else [(0,), (1,), (2,), (3,)])
    assert clf.config.vocab_size == len(tok) <= TINY['vocab_size'] and tok.padding_side == 'right'
    ds = tokenize(test, tok, max_length=TINY['max_length'])
    ids = ds['input_ids']
    assert tok.unk_token_id not in sum(ids, [])                                  # en, de, ru: nothing unknown
    assert all(i[0] == tok.bos_token_id and i[-1] == tok.eos_token_id for i in ids)
    batch = tok.pad({'input_ids': ids}, return_tensors='pt')                      # (18, T): right-padded with <pad>
    with torch.no_grad():
        logits = clf(**batch).logits
        assert logits.shape == (len(ids), 3) and torch.isfinite(logits).all()
        for b in (0, 7, 17):                                                    # each row as it is alone, unpadded
            alone = clf(input_ids=torch.tensor([ids[b]])).logits[0]
            torch.testing.assert_close(logits[b], alone, atol=1e-5, rtol=1e-4)

def test_folder_records_what_built_it(built, xnli):
    info = json.loads((built['llama-gqa']/'local_model.json').read_text())
    assert (info['family'], info['model_type'], info['kv_heads'], info['tokenizer']) == ('llama', 'llama', 2, 'byte-level BPE')
    assert info['n_texts'] == len(xnli[0]) and info['pretraining'] is None and info['loss'] == []
    assert sorted(x.name for x in built['xlmr'].iterdir()) == ['config.json', 'local_model.json', 'model.safetensors',
                                                              'tokenizer.json', 'tokenizer_config.json']

# --- scripts without spaces -------------------------------------------------------------------------------------

@pytest.mark.parametrize('task,lang,family', [('marc', 'zh', 'bloom'), ('pawsx', 'ko', 'xlmr')])
def test_chinese_and_korean_tokenize_into_many_known_tokens(shared_data, cache, task, lang, family):
    "The saved tokenizer, trained on the task's training texts (all five languages), on the unseen test texts of zh / ko."
    train = texts_of(load_task(task, 'train', data=shared_data))
    test = texts_of(load_task(task, 'test', langs=[lang], data=shared_data))[:400]
    tok = load_tokenizer(local_model(family, train, layers=1, heads=2, hidden=8, vocab_size=2000))
    ids = [tok(s, add_special_tokens=False)['input_ids'] for s in test]
    n = sum(map(len, ids))
    assert sum(i == tok.unk_token_id for e in ids for i in e) / n < 0.05
    assert n / len(test) > 3 * 5                                          # many tokens per text, not one per clause
    assert all(tok.decode(e) == s for e, s in zip(ids, test))            # and they spell the text exactly
    whole = sum('\ufffd' not in tok.decode([i]) for e in ids for i in e)
    assert whole / n > 0.5                                               # most tokens are whole characters or more
    word = train_tokenizer(train)                                        # the demo's tokenizer fails the same check
    wids = [word(s, add_special_tokens=False)['input_ids'] for s in test]
    assert sum(i == word.unk_token_id for e in wids for i in e) / sum(map(len, wids)) > 0.3

# --- cache, determinism, pretraining ----------------------------------------------------------------------------

def test_same_call_same_folder_without_rebuilding(built, xnli):
    p, n = built['xlmr'], BUILDS['model']
    mt = (p/'model.safetensors').stat().st_mtime_ns
    assert local_model('xlmr', xnli[0], **TINY) == p and BUILDS['model'] == n
    assert (p/'model.safetensors').stat().st_mtime_ns == mt
    assert local_model('xlmr', [list(t) for t in xnli[0]], **TINY, batch_size=8) == p   # lists as pairs; lr/batch: no pretraining
    assert BUILDS['model'] == n
    others = {local_model('xlmr', xnli[0], **TINY, seed=1), local_model('xlmr', xnli[0][:-1], **TINY),
              local_model('xlmr', xnli[0], **{**TINY, 'hidden': 32}), local_model('qwen3', xnli[0], **TINY)}
    assert p not in others and len(others) == 4 and BUILDS['model'] == n + 4

def test_a_fresh_build_is_byte_identical(built, xnli, tmp_path, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path))
    for case in ('xlmr', 'llama-gqa'):
        again = local_model(case.removesuffix('-gqa'), xnli[0], **TINY, **CASES[case])
        assert again.parent == tmp_path and again.name == built[case].name
        for f in ('config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'):
            assert (again/f).read_bytes() == (built[case]/f).read_bytes(), (case, f)

@pytest.mark.parametrize('family,how', [('xlmr', 'MLM'), ('llama', 'causal LM')])
def test_pretraining_learns_the_texts(cache, built, xnli, family, how):
    p = local_model(family, xnli[0], **TINY, pretrain_epochs=3, lr=3e-3)
    info = json.loads((p/'local_model.json').read_text())
    assert info['pretraining'] == how and len(info['loss']) == 3
    assert info['loss'][2] < info['loss'][0] - 0.3, info['loss']
    w = lambda q: load_classifier(q).base_model.get_input_embeddings().weight
    assert not torch.equal(w(p), w(built[family]))                          # the same init, then trained

# --- bad input ----------------------------------------------------------------------------------------------------

def test_bad_settings_get_one_clear_error(cache, xnli):
    t = xnli[0][:20]
    for kw, msg in [(dict(family='gpt2'), "Unknown model family 'gpt2'"), (dict(family='bert', kv_heads=2), 'no grouped-query'),
                    (dict(family='llama', kv_heads=3), 'must divide heads=4'), (dict(family='xlmr', heads=3), 'multiple of heads=3'),
                    (dict(family='xlmr', vocab_size=100), 'at least 261')]:
        with pytest.raises(ModelError, match=msg): local_model(texts=t, **{**TINY, **kw})
    for texts, msg in [('one text', 'list of strings'), ([], 'holds no text'), (['', ('', ' ')], 'holds no text'),
                       (t + [None], 'found None'), ([('a', 'b', 'c')], "found \\('a', 'b', 'c'\\)")]:
        with pytest.raises(ModelError, match=msg): local_model('xlmr', texts, **TINY)

def test_a_model_type_whose_saved_tokenizer_transformers_replaces_is_refused(cache, xnli):
    "transformers 5 reads a qwen2 folder's tokenizer as its own Qwen2Tokenizer: never kept silently with other tokens."
    sample = [s for t in xnli[0][:64] for s in t]
    try: p = local_model('qwen2', xnli[0], **TINY, kv_heads=2)
    except ModelError as e:
        assert "'llama' with kv_heads" in str(e); return
    assert load_tokenizer(p)(sample)['input_ids'] == train_bpe_tokenizer(D.flat_texts(xnli[0]), 500, 64)(sample)['input_ids']

def test_the_reload_check_catches_a_changed_tokenizer(cache, xnli, monkeypatch):
    other = train_bpe_tokenizer(['completely different words'] * 3, 300)
    monkeypatch.setattr(D, 'load_tokenizer', lambda folder: other)
    with pytest.raises(ModelError, match='does not read tokenizer.json as saved'): local_model('xlmr', xnli[0], **TINY, seed=7)

def test_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch, xnli):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path))
    def boom(*a, **k): raise KeyboardInterrupt('killed mid-build')
    monkeypatch.setattr(D, 'pretrain_mlm', boom)
    with pytest.raises(KeyboardInterrupt): local_model('llama', xnli[0], **TINY, pretrain_epochs=1)
    assert list(tmp_path.iterdir()) == []

# --- --model local:FAMILY -----------------------------------------------------------------------------------------

def test_model_spec(built, xnli):
    assert local_model_spec('local:bloom') == {'family': 'bloom'}
    assert local_model_spec('local:llama:layers=4,heads=8,kv_heads=2,pretrain_epochs=1,lr=5e-4') == \
           dict(family='llama', layers=4, heads=8, kv_heads=2, pretrain_epochs=1, lr=5e-4)
    for not_local in ('xlm-roberta-base', 'Qwen/Qwen2.5-0.5B', str(built['xlmr']), None):
        assert local_model_spec(not_local) is None
    for bad, msg in [('local:', 'names no family'), ('local:gpt2', "Unknown model family 'gpt2'"),
                     ('local:bert:layer=2', "unknown setting 'layer'"), ('local:bert:layers=2.5', 'layers must be an integer')]:
        with pytest.raises(ModelError, match=msg): local_model_spec(bad)
    spec = local_model_spec('local:llama:layers=2,heads=4,hidden=16,vocab_size=500,max_length=64,kv_heads=2')
    assert local_model(texts=xnli[0], **spec) == built['llama-gqa']
