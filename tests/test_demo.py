"The demo task: determinism, planted vs realised relatedness, labels from content, word order, splits, the tokenizer and model folder, cache and atomicity."
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, XLMRobertaForMaskedLM
import modtrace.demo as D
from modtrace.local import flat_texts, train_tokenizer
from modtrace.core import BUILDS, torch_threads
from modtrace.demo import (DEMO_LANGS, demo_data, demo_model, demo_sizes, demo_corpus, lexicon,
                           planted_relatedness, realised_relatedness, clause_concepts)
from modtrace.data import load_splits
from modtrace.tasks import get_task

TINY = dict(layers=1, heads=2, hidden=16, n_per_lang=60, epochs=2, batch_size=32)

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    return tmp_path/'cache'

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "Demo files at scale 0.25 (100 train, 24 dev, 50 test per language), in a cache of their own."
    mp = pytest.MonkeyPatch(); mp.setenv('MODTRACE_CACHE', str(tmp_path_factory.mktemp('cache')))
    yield demo_data(0, 0.25)
    mp.undo()

@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    mp = pytest.MonkeyPatch(); mp.setenv('MODTRACE_CACHE', str(tmp_path_factory.mktemp('mcache')))
    yield demo_model(0, **TINY)
    mp.undo()

def rows(root, task, lang, split='train'):
    return [json.loads(l) for l in open(Path(root)/task/lang/f'{split}.jsonl', encoding='utf-8')]

def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file()}

def concepts(root, lang, text):
    "Words of `text` mapped back to concepts through the saved lexicon."
    lex = pd.read_csv(Path(root)/'lexicon.csv', index_col='concept')
    back = {w: c for c, w in lex[lang].items()}
    return [back[w] for w in text.split()]

def content(root, lang, text):
    "The sorted concepts of `text` without the function words that only some grammars use (articles, z1's linker)."
    return sorted(c for c in concepts(root, lang, text) if c not in ('DET', 'LNK'))

def label_from(root, lang, text):
    lex = pd.read_csv(Path(root)/'lexicon.csv', index_col='concept')
    return int(sum(lex.at[c, 'polarity'] for c in concepts(root, lang, text)) > 0)

# --- determinism, files, sizes -------------------------------------------------------------------------------

def test_same_seed_same_files_other_seed_other_files(tmp_path, monkeypatch):
    out = {}
    for name, seed in (('x', 0), ('y', 0), ('z', 1)):
        monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/name))
        out[name] = files(demo_data(seed, 0.05))
    assert out['x'] == out['y']
    assert out['x'].keys() == out['z'].keys()
    assert out['x']['demo/a1/train.jsonl'] != out['z']['demo/a1/train.jsonl']
    assert out['x']['lexicon.csv'] != out['z']['lexicon.csv']

def test_layout_and_sizes(data):
    meta = json.loads((data/'meta.json').read_text())
    assert meta['sizes'] == demo_sizes(0.25) == dict(train=100, dev=24, test=50)
    for task, keys in (('demo', {'id', 'sentence1', 'sentence2', 'label'}), ('demo_single', {'id', 'text', 'label'})):
        for l in DEMO_LANGS:
            for split, n in meta['sizes'].items():
                rs = rows(data, task, l, split)
                assert len(rs) == n and all(set(r) == keys for r in rs), (task, l, split)
    assert demo_sizes(2.0) == dict(train=800, dev=200, test=400)

def test_load_splits_reads_the_demo(data, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(data.parent))
    sp = load_splits('demo', n_train=None, n_dev=None, n_test=None, scale=0.25)
    assert len(sp['train']) == 5 * 100 and set(sp['test']['lang']) == set(DEMO_LANGS)
    assert all(sp['train']['text_pair'])
    single = load_splits('demo_single', n_train=20, n_dev=10, n_test=10, scale=0.25)
    assert set(single['train']['text_pair']) == {''}

def test_registered_tasks():
    d, s = get_task('demo'), get_task('demo_single')
    assert (d.parallel, s.parallel) == (True, False)
    assert d.fields == ('sentence1', 'sentence2') and s.fields == ('text',)
    assert d.languages == s.languages == DEMO_LANGS and len(DEMO_LANGS) >= 5
    assert d.make_data is demo_data and d.default_model is demo_model and d.labels == (0, 1)

# --- relatedness ----------------------------------------------------------------------------------------------

def test_planted_matrix():
    R = planted_relatedness(0)
    assert list(R.index) == list(R.columns) == list(DEMO_LANGS)
    assert np.allclose(R.values, R.values.T) and np.allclose(np.diag(R.values), 1)
    off = R.values[~np.eye(5, dtype=bool)]
    assert off.max() >= 0.8                               # a closely related pair
    assert (R.loc['z1'].drop('z1') == 0).all()            # an isolate
    assert len(set(off.round(3))) >= 4                    # graded in between
    assert planted_relatedness(1).equals(R)

def test_lexicon_realises_the_planted_matrix():
    for seed in (0, 1):
        lex, R = lexicon(seed), planted_relatedness(seed)
        for l in DEMO_LANGS:
            for k in DEMO_LANGS: assert (lex.loc[D.CONCEPTS.index, l] == lex.loc[D.CONCEPTS.index, k]).mean() == pytest.approx(R.loc[l, k])
        assert lex.loc['LNK', list(DEMO_LANGS)].nunique() == len(DEMO_LANGS)   # the linker: a word of each language's own

def test_realised_overlap_matches_planted(data):
    Rr, R = realised_relatedness(data), pd.read_csv(data/'relatedness.csv', index_col=0)
    assert np.allclose(R.values, planted_relatedness(0).values)
    assert np.abs(Rr.values - R.values).max() <= 0.05, Rr.round(3)
    assert (Rr.loc['z1'].drop('z1') == 0).all()                   # the isolate shares no word at all

# --- labels and contents --------------------------------------------------------------------------------------

def test_labels_balanced(data):
    for task in ('demo', 'demo_single'):
        for l in DEMO_LANGS:
            for split in ('train', 'dev', 'test'):
                ys = [r['label'] for r in rows(data, task, l, split)]
                assert sum(ys) * 2 == len(ys), (task, l, split)

def test_labels_are_determined_by_content(data):
    for l in DEMO_LANGS:
        for r in rows(data, 'demo', l):
            assert label_from(data, l, r['sentence1'] + ' ' + r['sentence2']) == r['label']
        for r in rows(data, 'demo_single', l):
            assert label_from(data, l, r['text']) == r['label']

def test_demo_is_parallel(data):
    for split in ('train', 'dev', 'test'):
        ref = rows(data, 'demo', 'a1', split)
        for l in DEMO_LANGS[1:]:
            rs = rows(data, 'demo', l, split)
            assert [r['id'] for r in rs] == [r['id'] for r in ref]
            assert [r['label'] for r in rs] == [r['label'] for r in ref]         # same content, same label
            for r, q in zip(rs[:20], ref):                                         # the same content words
                assert content(data, l, r['sentence1']) == content(data, 'a1', q['sentence1'])

def test_demo_single_is_not_parallel(data):
    a, b = rows(data, 'demo_single', 'a1'), rows(data, 'demo_single', 'a2')
    assert not {r['id'] for r in a} & {r['id'] for r in b}
    ca = {tuple(sorted(concepts(data, 'a1', r['text']))) for r in a}
    cb = {tuple(sorted(concepts(data, 'a2', r['text']))) for r in b}
    assert len(ca & cb) < 5                                # each language draws its own contents

def test_no_content_shared_between_splits(data):
    for task, f in (('demo', 'sentence1'), ('demo_single', 'text')):
        texts = {s: {r[f] + r.get('sentence2', '') for r in rows(data, task, 'b1', s)} for s in ('train', 'dev', 'test')}
        assert not (texts['train'] & texts['test']) and not (texts['train'] & texts['dev']) and not (texts['dev'] & texts['test'])

def test_word_order_differs_between_languages(data):
    r0 = {l: rows(data, 'demo', l)[0]['sentence1'] for l in DEMO_LANGS}
    seqs = {l: tuple(concepts(data, l, t)) for l, t in r0.items()}
    assert len(set(seqs.values())) == len(DEMO_LANGS)                 # five different orders...
    assert len({tuple(content(data, l, t)) for l, t in r0.items()}) == 1   # ...of the same content words
    assert 'LNK' in seqs['z1'] and 'DET' not in seqs['z1']            # z1: a linker, no articles
    assert all('LNK' not in seqs[l] and 'DET' in seqs[l] for l in DEMO_LANGS if l != 'z1')
    c = dict(sa='good0', sn='noun00', v='verb00', oa='bad0', on='noun01')
    first = {l: clause_concepts(c, l)[0] for l in DEMO_LANGS}
    assert first['a1'] == 'DET' and first['z1'] == 'verb00'           # SVO vs VSO

def test_word_orders_follow_the_families():
    "Syntax never contradicts the planted relatedness: a family's languages differ in one switch, the families in 2-3, z1 in 3 or more."
    W = D.WORD_ORDER
    def switches(l, k): return sum(W[l][f] != W[k][f] for f in ('clause', 'adj', 'det', 'adp'))
    assert switches('a1', 'a2') == switches('b1', 'b2') == 1
    cross = [switches(l, k) for l in ('a1', 'a2') for k in ('b1', 'b2')]
    assert min(cross) == 2 and switches('a1', 'b1') == 2                 # the loan pair a1-b1 is among the closest across
    assert min(switches('z1', l) for l in DEMO_LANGS if l != 'z1') >= max(cross) >= 3
    assert all(W['z1'][f] != W[l][f] for l in DEMO_LANGS if l != 'z1' for f in ('clause', 'adj', 'det'))

# --- tokenizer and model --------------------------------------------------------------------------------------

def test_tokenizer_roundtrip_and_special_tokens(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert [tok.convert_tokens_to_ids(t) for t in ('<s>', '<pad>', '</s>', '<unk>', '<mask>')] == [0, 1, 2, 3, 4]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token, tok.mask_token, tok.cls_token, tok.sep_token) == \
           ('<s>', '</s>', '<pad>', '<unk>', '<mask>', '<s>', '</s>')
    assert tok.model_max_length == 128
    corpus = demo_corpus(0, TINY['n_per_lang'])
    for l in DEMO_LANGS:
        text = corpus[l][0]
        enc = tok(text)['input_ids']
        assert enc[0] == 0 and enc[-1] == 2 and 3 not in enc
        assert tok.decode(enc, skip_special_tokens=True) == text
    a, b = corpus['a1'][0], corpus['z1'][0]
    toks = tok.convert_ids_to_tokens(tok(a, b)['input_ids'])
    n = len(a.split())
    assert toks[0] == '<s>' and toks[n+1:n+3] == ['</s>', '</s>'] and toks[-1] == '</s>'   # XLM-R's pair template
    assert tok('qqq zzz')['input_ids'][1:-1] == [3, 3]

def test_demo_tokenizer_is_the_word_level_tokenizer_it_always_was():
    "The wrapping shared with the byte-level BPE tokenizer (`modtrace.local`) leaves the demo's tokenizer as it was built inline."
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    texts = flat_texts(t for ts in demo_corpus(0, 60).values() for t in ts)
    tok = Tokenizer(models.WordLevel(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=['<s>', '<pad>', '</s>', '<unk>', '<mask>'], min_frequency=1))
    tok.post_processor = processors.RobertaProcessing(('</s>', tok.token_to_id('</s>')), ('<s>', tok.token_to_id('<s>')))
    got = train_tokenizer(texts)
    assert got.backend_tokenizer.to_str() == tok.to_str()
    assert (got.model_max_length, got.pad_token_id, got.mask_token_id, got.padding_side) == (128, 1, 4, 'right')

def test_model_folder_loads_like_a_hub_model(tiny_model):
    clf = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert type(clf).__name__ == 'XLMRobertaForSequenceClassification'
    assert (clf.config.num_hidden_layers, clf.config.num_attention_heads, clf.config.hidden_size) == (1, 2, 16)
    assert clf.config.pad_token_id == tok.pad_token_id == 1 and clf.config.vocab_size == len(tok)
    assert clf.config.max_position_embeddings == tok.model_max_length + 2
    enc = tok(['a b', 'c'], ['d', 'e f g'], padding=True, return_tensors='pt')
    assert clf(**enc).logits.shape == (2, 2)
    mlm = XLMRobertaForMaskedLM.from_pretrained(tiny_model)
    torch.testing.assert_close(mlm.roberta.embeddings.word_embeddings.weight, clf.roberta.embeddings.word_embeddings.weight)
    info = json.loads((tiny_model/'pretrain.json').read_text())
    assert info['seed'] == 0 and len(info['mlm_loss']) == 2 and info['mlm_loss'][1] < info['mlm_loss'][0]

# --- cache and atomicity --------------------------------------------------------------------------------------

def test_cache_reuse(cache):
    p = demo_data(3, 0.02); mt = (p/'demo'/'a1'/'train.jsonl').stat().st_mtime_ns; n = BUILDS['data']
    assert demo_data(3, 0.02) == p and BUILDS['data'] == n and (p/'demo'/'a1'/'train.jsonl').stat().st_mtime_ns == mt
    assert demo_data(3, 0.04) != p and BUILDS['data'] == n + 1         # another scale: another folder
    m = demo_model(3, **TINY); n = BUILDS['model']
    assert demo_model(3, **TINY) == m and BUILDS['model'] == n
    assert m.parent == p.parent == cache

def test_the_model_does_not_depend_on_the_callers_threads(tmp_path, monkeypatch):
    "Pretraining runs on one thread: a notebook (all cores) builds the same demo model as the study (--threads 1), though threads change the weights."
    def build(threads, cache):
        monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/cache))
        with torch_threads(threads): return (demo_model(0, n_per_lang=200, epochs=1, progress=False)/'model.safetensors').read_bytes()
    pretrain = D.pretrain_mlm
    with monkeypatch.context() as mp:                                          # with the caller's threads, as before
        mp.setattr(D, 'pretrain_mlm', lambda *a, **k: pretrain(*a, **{**k, 'threads': None}))
        if build(1, 'c') == build(2, 'd'): pytest.skip("threads do not change these weights on this CPU: nothing to check")
    assert build(1, 'a') == build(2, 'b')

def test_model_settings_are_checked(cache):
    with pytest.raises(TypeError, match='unknown setting'): demo_model(0, layer=2)

def test_interrupted_builds_leave_nothing(cache, monkeypatch):
    def boom(*a, **k): raise KeyboardInterrupt('killed mid-build')
    monkeypatch.setattr(D, 'pretrain_mlm', boom)
    with pytest.raises(KeyboardInterrupt): demo_model(0, **TINY)
    monkeypatch.setattr(D, '_single_rows', boom)                        # after the `demo` files are written
    with pytest.raises(KeyboardInterrupt): demo_data(0, 0.02)
    assert list(cache.iterdir()) == []                                  # no final folder, no temporary one
    monkeypatch.undo()
    assert (demo_data(0, 0.02)/'meta.json').exists()                    # and the next call builds it
