"Tasks and data (SPEC section 1): registry, label rule, hub/local sources, splits, tokenisation, errors."
import json, importlib
import numpy as np, pandas as pd
import pytest, datasets
import modtrace.data as D
from modtrace.data import (DataError, TaskSpec, TASKS, register_task, get_task, binarize, join_texts, load_task,
                           load_splits, tokenize)

def raw(path):
    "A sample file's rows, as in the file."
    with open(path, encoding='utf-8') as f: return [json.loads(l) for l in f if l.strip()]

def by_lang(ds):
    "{lang: DataFrame} of a loaded split, rows in their order."
    df = ds.to_pandas()
    return {l: g.reset_index(drop=True) for l, g in df.groupby('lang', sort=False)}

def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(json.dumps(r, ensure_ascii=False) for r in rows) + '\n', encoding='utf-8')

def snapshot(folder): return sorted((str(p), p.stat().st_size) for p in folder.rglob('*'))

XNLI_FROM_DEV = {'train': 'train_from_dev'}

# ---------------------------------------------------------------- registry and label rule

def test_registry_defaults():
    x, p, m = get_task('xnli'), get_task('pawsx'), get_task('marc')
    assert (x.languages, x.lr, x.epochs, x.parallel) == (('en', 'fr', 'de', 'ru', 'es'), 2e-5, 4, True)
    assert (p.languages, p.lr, p.epochs, p.parallel) == (('en', 'fr', 'de', 'ko', 'es'), 9e-6, 5, True)
    assert (m.languages, m.lr, m.epochs, m.parallel) == (('zh', 'en', 'fr', 'de', 'es'), 2e-5, 5, False)
    assert x.is_pair and p.is_pair and not m.is_pair
    assert get_task(x) is x

def test_unknown_task_lists_known_ones():
    with pytest.raises(DataError, match=r"Unknown task .mnli.. Known tasks: demo, demo_single, marc, pawsx, xnli"): get_task('mnli')
    with pytest.raises(DataError, match='Unknown task'): load_splits('mnli')

def test_demo_tasks_import_modtrace_demo_lazily(monkeypatch):
    for t in ('demo', 'demo_single'): monkeypatch.delitem(TASKS, t, raising=False)
    real = importlib.import_module
    def missing(name, *a, **k):
        if name == 'modtrace.demo': raise ModuleNotFoundError("No module named 'modtrace.demo'", name='modtrace.demo')
        return real(name, *a, **k)
    monkeypatch.setattr(D.importlib, 'import_module', missing)
    with pytest.raises(DataError, match='modtrace.demo'): get_task('demo')
    spec = TaskSpec('demo', ('a', 'b'), ('sentence1', 'sentence2'), 'label', (0, 1), 1e-3, 1, True)
    monkeypatch.setattr(D.importlib, 'import_module', lambda name, *a, **k: register_task(spec) if name == 'modtrace.demo' else real(name))
    assert get_task('demo') is spec

def test_binarize_rules():
    assert [binarize('xnli', {'label': y}) for y in (0, 1, 2)] == [1, 0, 0]
    assert [binarize('marc', {'stars': s}) for s in (1, 2, 3, 4, 5)] == [0, 0, None, 1, 1]
    assert [binarize('pawsx', {'label': y}) for y in (0, 1)] == [0, 1]
    with pytest.raises(DataError, match='not one of'): binarize('xnli', {'label': 3})

def test_join_texts():
    assert join_texts(['Nice swing', 'Easy to install.']) == 'Nice swing. Easy to install.'
    assert join_texts(['Nice!', 'Easy.']) == 'Nice! Easy.'
    assert join_texts([None, 'Body']) == 'Body' and join_texts(['', 'Body']) == 'Body'

# ---------------------------------------------------------------- real samples

def test_label_rules_on_real_samples(shared_data):
    x = load_task('xnli', 'test', data=shared_data).to_pandas()
    assert set(x.orig_label) == {0, 1, 2} and (x.label == (x.orig_label == 0)).all()
    p = load_task('pawsx', 'test', data=shared_data).to_pandas()
    assert set(p.orig_label) == {0, 1} and (p.label == p.orig_label).all()
    m = load_task('marc', 'test', data=shared_data).to_pandas()
    assert set(m.orig_label) == {1, 2, 4, 5} and (m.label == (m.orig_label >= 4)).all()
    for df in (x, p, m): assert (df.text != '').all()

def test_marc_drops_three_stars_and_joins_title_and_body(shared_data):
    for lang in get_task('marc').languages:
        rows = raw(shared_data/'marc'/lang/'test.jsonl')
        got = load_task('marc', 'test', langs=[lang], data=shared_data).to_pandas().set_index('id')
        kept = [r for r in rows if r['stars'] != 3]
        assert 0 < len(got) == len(kept) < len(rows)            # the sample does hold 3-star reviews
        assert list(got.index) == [r['id'] for r in kept]
        for r in kept[:50]:
            want = join_texts([r['review_title'], r['review_body']])
            assert got.loc[r['id'], 'text'] == want and got.loc[r['id'], 'text_pair'] == ''
            assert got.loc[r['id'], 'orig_label'] == r['stars']
    en = {r['id']: r for r in raw(shared_data/'marc'/'en'/'test.jsonl') if r['stars'] != 3 and r['review_title']}
    got = load_task('marc', 'test', langs=['en'], data=shared_data).to_pandas().set_index('id')
    i, r = next(iter(en.items()))
    assert got.loc[i, 'text'].startswith(r['review_title']) and got.loc[i, 'text'].endswith(r['review_body'])
    zh = next(r for r in raw(shared_data/'marc'/'zh'/'train.jsonl') if r['stars'] != 3)
    assert zh['review_title'] is None
    assert load_task('marc', 'train', langs=['zh'], data=shared_data).to_pandas().set_index('id').loc[zh['id'], 'text'] == zh['review_body']

@pytest.mark.parametrize('task,lang,split,fields', [
    ('marc', 'zh', 'train', ('review_body',)), ('pawsx', 'ko', 'train', ('sentence1', 'sentence2')),
    ('xnli', 'ru', 'test', ('premise', 'hypothesis')), ('xnli', 'ru', 'train_from_dev', ('premise', 'hypothesis'))])
def test_non_latin_scripts_intact(shared_data, task, lang, split, fields):
    rows = {r['id']: r for r in raw(shared_data/task/lang/f'{split}.jsonl')}
    sf = {'train': split} if split not in ('train', 'test') else None
    got = load_task(task, 'train' if sf else split, langs=[lang], data=shared_data, split_files=sf).to_pandas()
    assert len(got) > 0
    for _, g in got.head(100).iterrows():
        r = rows[g.id]
        assert g.text == r[fields[0]] and (len(fields) == 1 or g.text_pair == r[fields[1]])
    script = {'zh': '\u4e00', 'ko': '\uac00', 'ru': '\u0400'}[lang]   # a letter of the script's block
    block = lambda c: ord(script) <= ord(c) < ord(script) + 0x1000
    assert sum(any(map(block, t)) for t in got.text) > 0.9 * len(got)

def test_parallel_ids_identical_across_languages(shared_data):
    xs = load_splits('xnli', n_train=300, n_dev=100, n_test=200, data=shared_data, split_files=XNLI_FROM_DEV)
    ps = load_splits('pawsx', n_train=300, n_dev=100, n_test=200, data=shared_data)
    for task, sp in (('xnli', xs), ('pawsx', ps)):
        langs = get_task(task).languages
        for split, n in (('train', 300), ('dev', 100), ('test', 200)):
            g = by_lang(sp[split])
            assert list(g) == list(langs)                       # grouped in the task's order
            ids = [list(g[l].id) for l in langs]
            assert len(ids[0]) == n and len(set(ids[0])) == n and all(i == ids[0] for i in ids)
        assert not set(sp['train']['id']) & set(sp['dev']['id'])      # dev carved from the rest of train
        assert not set(sp['train']['id']) & set(sp['test']['id'])
    # XNLI labels are shared by all translations of a pair
    t = by_lang(xs['train']); assert all((t[l].label == t['en'].label).all() for l in t)

def test_marc_is_not_parallel_and_has_requested_sizes(shared_data):
    sp = load_splits('marc', n_train=200, n_dev=50, n_test=100, data=shared_data)
    g = by_lang(sp['train'])
    assert list(g) == ['zh', 'en', 'fr', 'de', 'es'] and all(len(d) == 200 for d in g.values())
    assert all(d.id.str.startswith(f'{l}-train-').all() for l, d in g.items())
    assert all(len(d) == 50 for d in by_lang(sp['dev']).values()) and all(len(d) == 100 for d in by_lang(sp['test']).values())
    assert not set(sp['train']['id']) & set(sp['dev']['id'])
    assert 3 not in set(sp['train']['orig_label']) | set(sp['test']['orig_label'])

def test_deterministic_by_seed_and_language_subset(shared_data):
    kw = dict(n_train=100, n_dev=20, n_test=50, data=shared_data)
    a, b, c = load_splits('pawsx', seed=0, **kw), load_splits('pawsx', seed=0, **kw), load_splits('pawsx', seed=1, **kw)
    for s in ('train', 'dev', 'test'): assert a[s].to_pandas().equals(b[s].to_pandas())
    assert list(a['train']['id']) != list(c['train']['id'])
    m0, m1 = load_splits('marc', seed=3, **kw), load_splits('marc', langs=['fr', 'en'], seed=3, **kw)
    assert by_lang(m1['train'])['en'].equals(by_lang(m0['train'])['en'])   # a language's draw ignores the others
    assert list(by_lang(m1['train'])) == ['en', 'fr']                       # task order, not the caller's

def test_task_folder_or_its_parent(shared_data):
    a = load_task('pawsx', 'test', langs=['de'], data=shared_data).to_pandas()
    assert a.equals(load_task('pawsx', 'test', langs=['de'], data=shared_data/'pawsx').to_pandas())

def test_size_none_takes_everything(shared_data):
    sp = load_splits('pawsx', langs=['en', 'de'], n_train=1500, n_dev=None, n_test=None, data=shared_data)
    assert len(sp['dev']) == 2 * 500 and len(sp['test']) == 2 * 1000

# ---------------------------------------------------------------- other file formats

def _sample_frames(shared_data, task, langs, split):
    return {l: pd.DataFrame(raw(shared_data/task/l/f'{split}.jsonl')) for l in langs}

@pytest.mark.parametrize('task,langs', [('pawsx', ['en', 'ko']), ('marc', ['zh', 'en'])])
@pytest.mark.parametrize('fmt', ['csv', 'tsv', 'parquet', 'single_csv', 'single_parquet'])
def test_formats_equal_jsonl(shared_data, tmp_path, task, langs, fmt):
    for split in ('train', 'test'):
        frames = _sample_frames(shared_data, task, langs, split)
        if fmt.startswith('single'):
            rng = np.random.default_rng(0)
            df = pd.concat([f.assign(language=l) for l, f in frames.items()], ignore_index=True)
            df = df.iloc[rng.permutation(len(df))]                       # file order must not matter
            ext = fmt.split('_')[1]
            (df.to_csv if ext == 'csv' else df.to_parquet)(tmp_path/f'{split}.{ext}', index=False)
        else:
            for l, f in frames.items():
                (tmp_path/l).mkdir(exist_ok=True); p = tmp_path/l/f'{split}.{fmt}'
                if fmt == 'parquet': f.to_parquet(p, index=False)
                else: f.to_csv(p, sep='\t' if fmt == 'tsv' else ',', index=False)
    kw = dict(langs=langs, n_train=200, n_dev=50, n_test=100, seed=5)
    want, got = load_splits(task, data=shared_data, **kw), load_splits(task, data=tmp_path, **kw)
    for s in ('train', 'dev', 'test'): pd.testing.assert_frame_equal(got[s].to_pandas(), want[s].to_pandas())

def test_dev_file_is_used_when_present(tmp_path):
    for l in ('en', 'fr'):
        for split, stem, n in (('train', 'train', 8), ('dev', 'validation', 5), ('test', 'test', 6)):
            write_jsonl(tmp_path/l/f'{stem}.jsonl', [{'id': f'{split}{i}', 'sentence1': f'{l} a{i}', 'sentence2': f'{l} b{i}',
                                                     'label': i % 2} for i in range(n)])
    sp = load_splits('pawsx', langs=['en', 'fr'], n_train=8, n_dev=5, n_test=6, data=tmp_path)
    assert set(sp['dev']['id']) == {f'dev{i}' for i in range(5)} and len(sp['dev']) == 10
    # a file without ids gets '{stem}-{k}' (XNLI on the hub has none)
    write_jsonl(tmp_path/'en'/'test.jsonl', [{'sentence1': 'a', 'sentence2': 'b', 'label': 1}] * 2)
    assert list(load_task('pawsx', 'test', langs=['en'], data=tmp_path)['id']) == ['test-0', 'test-1']

# ---------------------------------------------------------------- the hub path (load_dataset mocked: no network)

def test_hub_unreachable_says_how_to_pass_local_files(monkeypatch):
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', True, raising=False)
    for task in ('xnli', 'pawsx', 'marc'):
        with pytest.raises(DataError, match=r'(?s)from the Hugging Face hub.*data=FOLDER.*--data FOLDER'):
            load_splits(task, n_train=2)

def test_hub_sources_are_adapted_to_the_raw_schema(monkeypatch):
    calls = []
    def fake(path, config, split):
        calls.append((path, config, split)); n = 12
        if path == 'facebook/xnli':
            return datasets.Dataset.from_dict({'premise': [f'{config} p{i}' for i in range(n)],
                                               'hypothesis': [f'{config} h{i}' for i in range(n)], 'label': [i % 3 for i in range(n)]})
        if path == 'google-research-datasets/paws-x':
            return datasets.Dataset.from_dict({'id': list(range(1, n + 1)), 'sentence1': [('' if i == 3 and config == 'fr' else f's{i}') for i in range(n)],
                                               'sentence2': [f't{i}' for i in range(n)], 'label': [i % 2 for i in range(n)]})
        return datasets.Dataset.from_dict({'id': [f'{config}_{split}_{i}' for i in range(n)], 'text': [f'review {i}' for i in range(n)],
                                           'label': [i % 5 for i in range(n)], 'label_text': [str(i % 5) for i in range(n)]})
    monkeypatch.setattr(datasets, 'load_dataset', fake)
    x = load_splits('xnli', langs=['en', 'ru'], n_train=4, n_dev=3, n_test=5)
    assert ('facebook/xnli', 'ru', 'validation') in calls
    assert all(i.startswith('train-') for i in x['train']['id']) and all(i.startswith('dev-') for i in x['dev']['id'])
    assert by_lang(x['test'])['en'].id.equals(by_lang(x['test'])['ru'].id)
    p = load_task('pawsx', 'train', langs=['en', 'fr'])                  # hub rows with an empty text are dropped
    assert len(p) == 12 + 11 and p[0]['id'] == '1'
    ps = load_splits('pawsx', langs=['en', 'fr'], n_train=11, n_dev=0, n_test=0)
    assert '4' not in set(ps['train']['id'])                              # the fr-empty pair is in no language
    m = load_task('marc', 'test', langs=['de']).to_pandas()
    assert set(m.orig_label) == {1, 2, 4, 5} and (m.label == (m.orig_label >= 4)).all() and m.text.iloc[0] == 'review 0'

def test_make_data_is_used_when_no_data_is_given(monkeypatch, tmp_path):
    calls = []
    def make_data(seed=0, scale=1.0):
        calls.append((seed, scale))
        for l in ('a', 'b'):
            for split in ('train', 'test'):
                write_jsonl(tmp_path/'toy'/l/f'{split}.jsonl', [{'id': str(i), 'text': f'{l} w{i}', 'label': i % 2} for i in range(10)])
        return tmp_path
    spec = TaskSpec('toy', ('a', 'b'), ('text',), 'label', (0, 1), 1e-3, 1, False, make_data=make_data)
    monkeypatch.setitem(TASKS, 'toy', spec)
    sp = load_splits('toy', n_train=5, n_dev=2, n_test=3, seed=7, scale=0.5)
    assert calls == [(7, 0.5)] and len(sp['train']) == 10 and set(sp['train']['text_pair']) == {''}

# ---------------------------------------------------------------- bad input

@pytest.fixture
def toy(tmp_path):
    "A small PAWS-X-shaped folder with en and fr."
    for l in ('en', 'fr'):
        for split in ('train', 'test'):
            write_jsonl(tmp_path/l/f'{split}.jsonl', [{'id': str(i), 'sentence1': f'{l} a{i}', 'sentence2': f'{l} b{i}', 'label': i % 2}
                                                      for i in range(10)])
    return tmp_path

def test_language_not_present(toy, shared_data):
    with pytest.raises(DataError, match=rf"Language 'ko' is not present in {toy}.*found language folders: en, fr"):
        load_splits('pawsx', langs=['en', 'ko'], n_train=2, data=toy)
    df = pd.concat([pd.DataFrame(raw(toy/'en'/'test.jsonl')).assign(lang='en')])
    df.to_csv(toy/'one.csv', index=False)
    with pytest.raises(DataError, match=r"Language 'fr' is not present in .*one.csv.*has: en"):
        load_task('pawsx', 'test', langs=['fr'], data=toy, split_files={'test': 'one'})
    with pytest.raises(DataError, match=r"No train file for language 'ru' in .*xnli/ru.*found: test, train_from_dev.*split_files"):
        load_splits('xnli', n_train=10, data=shared_data)
    with pytest.raises(DataError, match='does not exist'): load_task('pawsx', 'test', data=toy/'nope')

def test_missing_field(toy):
    write_jsonl(toy/'fr'/'test.jsonl', [{'id': '0', 'sentence1': 'x', 'label': 0}])
    with pytest.raises(DataError, match=rf"{toy/'fr'/'test.jsonl'} has no field 'sentence2'"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=2, data=toy)
    write_jsonl(toy/'fr'/'test.jsonl', [{'id': '0', 'sentence1': 'x', 'sentence2': 'y'}])
    with pytest.raises(DataError, match="has no field 'label'"): load_task('pawsx', 'test', langs=['fr'], data=toy)

def test_labels_outside_the_task_set(toy, tmp_path):
    write_jsonl(toy/'en'/'train.jsonl', [{'id': str(i), 'sentence1': 'x', 'sentence2': 'y', 'label': y} for i, y in enumerate([0, 1, 2, 'yes', 2])])
    with pytest.raises(DataError, match=rf"{toy/'en'/'train.jsonl'}: values of 'label' outside pawsx's label set \(0, 1\): 'yes', 2\."):
        load_splits('pawsx', langs=['en'], n_train=2, data=toy)
    write_jsonl(tmp_path/'marc'/'en'/'test.jsonl', [{'id': 'a', 'review_title': None, 'review_body': 'ok', 'stars': 0}])
    with pytest.raises(DataError, match=r"values of 'stars' outside marc's label set \(1, 2, 3, 4, 5\): 0"):
        load_task('marc', 'test', langs=['en'], data=tmp_path)

def test_empty_texts(toy, tmp_path):
    rows = raw(toy/'fr'/'train.jsonl'); rows[4]['sentence2'] = '  '; rows[6]['sentence1'] = None
    write_jsonl(toy/'fr'/'train.jsonl', rows)
    with pytest.raises(DataError, match=rf"{toy/'fr'/'train.jsonl'}: empty text in 2 row\(s\), e.g. id 4, 6"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=2, data=toy)
    # a missing MARC title is fine, a missing body is not
    write_jsonl(tmp_path/'marc'/'en'/'test.jsonl', [{'id': 'a', 'review_title': 'T', 'review_body': '', 'stars': 5},
                                                     {'id': 'b', 'review_title': None, 'review_body': 'B', 'stars': 5}])
    with pytest.raises(DataError, match='empty text in 1 row.*id a'): load_task('marc', 'test', langs=['en'], data=tmp_path)

def test_duplicate_ids(toy):
    rows = raw(toy/'en'/'test.jsonl'); rows[3]['id'] = '1'; write_jsonl(toy/'en'/'test.jsonl', rows)
    with pytest.raises(DataError, match='duplicate ids, e.g. 1'): load_task('pawsx', 'test', langs=['en'], data=toy)

def test_fewer_examples_than_asked(toy, shared_data):
    with pytest.raises(DataError, match=r"pawsx train: ids present in every language \(en, fr; per language en: 10, fr: 10\): asked for 11 examples, only 10"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=11, data=toy)
    with pytest.raises(DataError, match=r"dev \(carved from the train rows not drawn for train\).*asked for 3 examples, only 2"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=8, n_dev=3, data=toy)
    with pytest.raises(DataError, match=r"pawsx test.*asked for 20 examples, only 10"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=5, n_dev=2, n_test=20, data=toy)
    with pytest.raises(DataError, match=r"marc train language 'zh': asked for 2000 examples, only \d+ available"):
        load_splits('marc', data=shared_data)
    # parallel draws use only ids present in all languages
    write_jsonl(toy/'fr'/'train.jsonl', raw(toy/'fr'/'train.jsonl')[:7])
    with pytest.raises(DataError, match=r"en: 10, fr: 7\): asked for 8 examples, only 7"):
        load_splits('pawsx', langs=['en', 'fr'], n_train=8, data=toy)

def test_failed_loads_leave_nothing_behind(toy):
    write_jsonl(toy/'fr'/'test.jsonl', [{'id': '0', 'sentence1': 'x', 'label': 0}])
    before = snapshot(toy)
    with pytest.raises(DataError): load_splits('pawsx', langs=['en', 'fr'], n_train=2, data=toy)
    assert snapshot(toy) == before

def test_unreadable_file(toy):
    (toy/'en'/'test.jsonl').write_text('{"id": "0", "sentence1": ', encoding='utf-8')
    with pytest.raises(DataError, match=r'Could not read .*en/test.jsonl'): load_task('pawsx', 'test', langs=['en'], data=toy)

# ---------------------------------------------------------------- tokenisation

@pytest.fixture(scope='module')
def bpe_tokenizer(shared_data):
    "A small BPE tokenizer trained here on sample texts of several scripts (no hub), as a HF fast tokenizer."
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, processors
    from transformers import PreTrainedTokenizerFast
    texts = [r[f] for t, l, fs in (('pawsx', 'en', ('sentence1', 'sentence2')), ('pawsx', 'ko', ('sentence1', 'sentence2')),
                                   ('marc', 'zh', ('review_body',)))
             for r in raw(shared_data/t/l/'test.jsonl')[:200] for f in fs]
    special = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=800, special_tokens=special, show_progress=False))
    tok.post_processor = processors.RobertaProcessing(('</s>', tok.token_to_id('</s>')), ('<s>', tok.token_to_id('<s>')))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>', unk_token='<unk>', pad_token='<pad>',
                                   mask_token='<mask>', cls_token='<s>', sep_token='</s>')

def test_tokenize_pairs_and_single_texts(shared_data, bpe_tokenizer):
    tk = bpe_tokenizer
    p = load_splits('pawsx', langs=['en', 'ko'], n_train=20, n_dev=5, n_test=5, data=shared_data)['train']
    out = tokenize(p, tk, max_length=512)
    assert {'id', 'lang', 'label', 'input_ids', 'attention_mask'} <= set(out.column_names)
    assert list(out['id']) == list(p['id']) and list(out['label']) == list(p['label']) and list(out['lang']) == list(p['lang'])
    for r in out.select(range(0, 40, 7)):
        assert r['input_ids'] == tk(r['text'], r['text_pair'])['input_ids']
        assert r['input_ids'].count(tk.sep_token_id) >= 2                   # two segments: </s></s> between them
    lens = [len(x) for x in out['input_ids']]
    assert len(set(lens)) > 1                                                # not padded
    assert all(len(a) == len(i) and set(a) == {1} for a, i in zip(out['attention_mask'], out['input_ids']))
    short = tokenize(p, tk, max_length=32)
    assert all(len(x) == min(32, n) for x, n in zip(short['input_ids'], lens))  # truncated to max_length
    r = short[0]; assert r['input_ids'] == tk(r['text'], r['text_pair'], truncation=True, max_length=32)['input_ids']
    m = load_task('marc', 'test', langs=['zh'], data=shared_data).select(range(10))
    mo = tokenize(m, tk, max_length=16)
    for r in mo: assert r['input_ids'] == tk(r['text'], truncation=True, max_length=16)['input_ids']
    assert all(sum(i != tk.unk_token_id for i in r['input_ids'][1:-1]) > 0 for r in mo)  # Chinese text is tokenised, not lost
