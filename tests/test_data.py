"Tasks and data (SPEC section 1): registry, label rules as data (any label set), hub/local sources, languages, splits, tasks from config files, tokenisation, errors."
import json
import numpy as np, pandas as pd
import pytest, datasets
import modtrace.tasks as D
from modtrace.data import load_task, load_splits, tokenize
from modtrace.sources import DataError, join_texts, label_value
from modtrace.tasks import TaskSpec, TASKS, register_task, get_task, binarize

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
    with pytest.raises(DataError, match=r"Unknown task .mnli.. Known tasks: demo, demo_single, marc, pawsx, udpos, xnli"): get_task('mnli')
    with pytest.raises(DataError, match='Unknown task'): load_splits('mnli')

def test_task_plugins_come_by_entry_point(monkeypatch):
    "A task the registry lacks is looked up in the plug-ins announced under `modtrace.tasks`; a broken plug-in is one error."
    for t in ('demo', 'demo_single'): monkeypatch.delitem(TASKS, t, raising=False)
    spec = TaskSpec('demo', ('a', 'b'), ('sentence1', 'sentence2'), 'label', (0, 1), 1e-3, 1, True)
    class EP:
        name, value = 'demo', 'modtrace.demo'
        def load(self): register_task(spec)
    monkeypatch.setattr(D.importlib.metadata, 'entry_points', lambda group: [EP()] if group == 'modtrace.tasks' else [])
    assert get_task('demo') is spec
    class Broken(EP):
        def load(self): raise ModuleNotFoundError("No module named 'torch'")
    monkeypatch.setattr(D.importlib.metadata, 'entry_points', lambda group: [Broken()])
    with pytest.raises(DataError, match=r"plug-in 'demo' \(modtrace.demo.*failed to import: ModuleNotFoundError"): get_task('demo_single')

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
    assert list(by_lang(m1['train'])) == ['fr', 'en']                       # the caller's order (issue 20)

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
        load_splits('pawsx', langs=['en', 'fr'], n_train=2, data=toy)
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

# ---------------------------------------------------------------- presets unchanged by the label rule as data

def fingerprint_splits(sp):
    "A hash of what a DatasetDict holds: features, dtypes, every value and the row order."
    import hashlib
    h = hashlib.sha256()
    for k in ('train', 'dev', 'test'):
        ds = sp[k]; h.update(repr(ds.features).encode()); df = ds.to_pandas()
        h.update(repr(list(df.dtypes.astype(str))).encode())
        h.update(pd.util.hash_pandas_object(df, index=True).values.tobytes())
    return h.hexdigest()[:16]

# Recorded with the per-name label rule (`binarize` hard-coded per task, commit ff7bed5), before the label
# rule became data (label_map): the presets and the demo must give byte-identical splits.
TODAY = {
    'xnli': ('e14226a05d69f1b9', dict(task='xnli', split_files=XNLI_FROM_DEV, n_train=1000, n_dev=300, n_test=500, seed=0)),
    'xnli_en_de_ru': ('43cc069aaca149c4', dict(task='xnli', langs=['en', 'de', 'ru'], split_files=XNLI_FROM_DEV, n_train=200, n_dev=50, n_test=100, seed=3)),
    'pawsx': ('f822f3884931b94e', dict(task='pawsx', n_train=1500, n_dev=400, n_test=500, seed=0)),
    'pawsx_all': ('a3e2d5b22446b6d0', dict(task='pawsx', n_train=None, n_dev=None, n_test=None, seed=1)),
    'marc': ('bcff6f80490e41f5', dict(task='marc', n_train=300, n_dev=50, n_test=200, seed=0)),
    'marc_es_zh': ('930d52215377d3bf', dict(task='marc', langs=['zh', 'es'], n_train=100, n_dev=20, n_test=50, seed=2)),  # zh first: languages keep the order given (issue 20)
}

@pytest.mark.parametrize('case', list(TODAY))
def test_presets_give_the_same_splits_as_before(shared_data, case):
    want, kw = TODAY[case]
    kw = dict(kw); task = kw.pop('task')
    assert fingerprint_splits(load_splits(task, data=shared_data, **kw)) == want

@pytest.mark.parametrize('task,want,kw', [('demo', '0af35d8c00b6028a', dict(n_train=None, n_dev=None, n_test=None, scale=0.25)),
                                          ('demo_single', '022038cd85c45347', dict(n_train=20, n_dev=10, n_test=10, scale=0.25))])
def test_demo_splits_as_before(task, want, kw):
    "The demo's data generator (modtrace.demo, DEMO_VERSION 2: word orders that follow the families) and this loader together: the demo study's input is unchanged."
    assert fingerprint_splits(load_splits(task, **kw)) == want

# ---------------------------------------------------------------- label sets

def test_label_value():
    assert [label_value(v) for v in (1, '1', 1.0, ' 2 ', True, np.int64(3), 'pos ', '', None, float('nan'), 0.5, '0.5')] == \
           [1, 1, 1, 2, 1, 3, 'pos', None, None, None, '0.5', '0.5']

def test_label_rule_is_data_on_the_spec():
    assert get_task('xnli').class_map == {0: 1, 1: 0, 2: 0} and get_task('xnli').num_labels == 2
    assert get_task('marc').class_map == {1: 0, 2: 0, 3: None, 4: 1, 5: 1} and get_task('marc').num_labels == 2
    assert get_task('pawsx').class_map == {0: 0, 1: 1} and get_task('xnli3').class_map == {0: 0, 1: 1, 2: 2}
    assert get_task('xnli3').num_labels == 3 and get_task('xnli3').class_names == ('entailment', 'neutral', 'contradiction')
    assert D.map_label('xnli3', {'label': '2'}) == 2 and binarize is D.map_label
    t = TaskSpec('t', ('a', 'b'), ('x',), 'y', ('neg', 'neu', 'pos'), 1e-3, 1, False, label_map={'neg': 0, 'neu': None, 'pos': 1})
    assert t.num_labels == 2 and D.map_label(t, {'y': 'neu'}) is None and D.map_label(t, {'y': ' pos'}) == 1

@pytest.mark.parametrize('kw,msg', [
    (dict(labels=(1,)), 'at least 2 classes'),
    (dict(labels=(1, 1)), 'must be distinct'),
    (dict(labels=(1, 2, 3), label_map={1: 0, 2: 1}), r'label_map gives no class to label\(s\) \[3\]'),
    (dict(labels=(1, 2), label_map={1: 0, 2: 1, 7: 1}), r'label_map maps \[7\], which are not in labels'),
    (dict(labels=(1, 2), label_map={1: 0, 2: 2}), 'class ids must be the integers 0..k-1'),
    (dict(labels=(1, 2), label_map={1: 0, 2: None}), 'at least 2 classes'),
    (dict(labels=(1, 2), class_names=('a', 'b', 'c')), '3 class_names for 2 classes'),
])
def test_bad_label_rules(kw, msg):
    with pytest.raises(DataError, match=msg): TaskSpec('t', ('a', 'b'), ('x',), 'y', lr=1e-3, epochs=1, parallel=False, **kw)

def test_xnli3_reads_the_xnli_files_with_three_classes(shared_data):
    x3 = load_splits('xnli3', langs=['en', 'ru'], n_train=300, n_dev=60, n_test=200, data=shared_data, split_files=XNLI_FROM_DEV)
    x2 = load_splits('xnli', langs=['en', 'ru'], n_train=300, n_dev=60, n_test=200, data=shared_data, split_files=XNLI_FROM_DEV)
    for s in ('train', 'dev', 'test'):
        a, b = x3[s].to_pandas(), x2[s].to_pandas()
        assert a.drop(columns='label').equals(b.drop(columns='label'))      # same rows, only the label rule differs
        assert (a.label == a.orig_label).all() and (b.label == (b.orig_label == 0)).all()
    assert set(x3['train']['label']) == {0, 1, 2}

# ---------------------------------------------------------------- languages

def test_xnli_with_russian_from_train_from_dev(shared_data):
    sp = load_splits('xnli', langs=['en', 'de', 'ru'], n_train=200, n_dev=50, n_test=100, data=shared_data, split_files=XNLI_FROM_DEV)
    for s, n in (('train', 200), ('dev', 50), ('test', 100)):
        g = by_lang(sp[s])
        assert list(g) == ['en', 'de', 'ru'] and all(len(d) == n for d in g.values())
        assert all(list(d.id) == list(g['en'].id) for d in g.values())
    assert all(i.startswith('dev-') for i in sp['train']['id'])             # read from train_from_dev
    ru = {r['id']: r for r in raw(shared_data/'xnli'/'ru'/'train_from_dev.jsonl')}
    t = by_lang(sp['train'])['ru']
    assert all(ru[i]['premise'] == p for i, p in zip(t.id, t.text))

def test_any_subset_or_superset_of_languages(toy, tmp_path):
    for l in ('it', 'pt'):                                                   # two languages PAWS-X does not have
        for split in ('train', 'test'):
            write_jsonl(toy/l/f'{split}.jsonl', [{'id': str(i), 'sentence1': f'{l} a{i}', 'sentence2': f'{l} b{i}', 'label': i % 2}
                                                 for i in range(10)])
    sp = load_splits('pawsx', langs=['pt', 'fr', 'it', 'en'], n_train=4, n_dev=2, n_test=3, data=toy)
    assert list(by_lang(sp['train'])) == ['pt', 'fr', 'it', 'en']            # in the order given (issue 20)
    assert list(by_lang(sp['test'])) == ['pt', 'fr', 'it', 'en']
    sub = load_splits('pawsx', langs=['it', 'pt'], n_train=4, n_dev=2, n_test=3, data=toy)
    assert list(by_lang(sub['train'])) == ['it', 'pt']
    assert D.data_languages('pawsx', data=toy) == ['en', 'fr', 'it', 'pt']

def test_at_least_two_languages(toy):
    for langs in (['en'], 'en', ['en', 'en'], []):
        with pytest.raises(DataError, match=r'a study needs at least 2 languages') as e: load_splits('pawsx', langs=langs, data=toy)
        assert e.value.info['option'] == 'langs'
    with pytest.raises(DataError, match="Languages are codes"): load_splits('pawsx', langs=['en', 3], data=toy)
    assert len(load_task('pawsx', 'test', langs=['en'], data=toy)) == 10      # one language's split is still fine

def test_missing_languages_are_listed_with_those_found(toy, shared_data, tmp_path):
    with pytest.raises(DataError, match=r"Languages 'ko', 'ja' are not present in .* Languages found: de, en, es, fr, ru\.") as e:
        load_splits('xnli', langs=['ko', 'en', 'ja'], data=shared_data, split_files=XNLI_FROM_DEV)
    assert e.value.info == dict(option='langs', missing=['ko', 'ja'], found=['de', 'en', 'es', 'fr', 'ru'])
    one = tmp_path/'one'; one.mkdir()
    for split in ('train', 'test'):                                          # one file per split with a `lang` column
        pd.concat([pd.DataFrame(raw(toy/l/f'{split}.jsonl')).assign(lang=l) for l in ('en', 'fr')]).to_csv(one/f'{split}.csv', index=False)
    with pytest.raises(DataError, match=rf"Languages 'de', 'ko' are not present in {one} \(found train.csv, test.csv: 'lang' values en, fr\)\. "
                                        r"Languages found: en, fr\."):
        load_splits('pawsx', langs=['en', 'de', 'ko'], data=one)
    (one/'test.csv').unlink()
    with pytest.raises(DataError, match=r"Language 'de' is not present in .*train.csv \(its 'lang' column has: en, fr\)"):
        load_splits('pawsx', langs=['en', 'de'], data=one)
    assert D.data_languages('pawsx', data=one) == ['en', 'fr']

def test_split_files_with_an_unknown_split(toy):
    with pytest.raises(DataError, match=r"split_files names unknown split\(s\) \['validation'\]"):
        load_splits('pawsx', langs=['en', 'fr'], data=toy, split_files={'validation': 'dev'})

# ---------------------------------------------------------------- tasks from a config file

PAWSX_TOML = '''\
name = "pawsx_custom"
data = "pawsx"                     # relative to this file
languages = ["en", "fr", "de", "ko", "es"]
text = ["sentence1", "sentence2"]
label = "label"
labels = [0, 1]
parallel = true
lr = 9e-6
epochs = 5
focus_lang = "de"
'''

def assert_same_splits(a, b):
    for s in ('train', 'dev', 'test'):
        pd.testing.assert_frame_equal(a[s].to_pandas(), b[s].to_pandas())
        assert a[s].features == b[s].features

def test_pawsx_as_a_custom_task_equals_the_preset(shared_data, tmp_path, monkeypatch):
    (tmp_path/'pawsx').symlink_to(shared_data/'pawsx')
    (tmp_path/'pawsx_custom.toml').write_text(PAWSX_TOML, encoding='utf-8')
    monkeypatch.chdir(shared_data)                                           # relative paths start at the file, not here
    spec = D.task_from_config(tmp_path/'pawsx_custom.toml')
    p = get_task('pawsx')
    assert (spec.name, spec.languages, spec.fields, spec.lr, spec.epochs, spec.parallel, spec.focus_lang, spec.num_labels) == \
           ('pawsx_custom', p.languages, p.fields, p.lr, p.epochs, p.parallel, p.focus_lang, 2)
    assert spec.data == str((tmp_path/'pawsx').resolve()) and spec.source == str(tmp_path/'pawsx_custom.toml')
    assert get_task('pawsx_custom') is spec and get_task(str(tmp_path/'pawsx_custom.toml')) is spec
    for kw in (dict(n_train=1500, n_dev=400, n_test=500, seed=0), dict(n_train=100, n_dev=20, n_test=50, seed=4, langs=['ko', 'en'])):
        assert_same_splits(load_splits(tmp_path/'pawsx_custom.toml', **kw), load_splits('pawsx', data=shared_data, **kw))
    assert fingerprint_splits(load_splits('pawsx_custom', n_train=1500, n_dev=400, n_test=500)) == TODAY['pawsx'][0]

def test_marc_as_a_custom_yaml_task_with_a_label_map(shared_data, tmp_path):
    (tmp_path/'marc.yaml').write_text(f'''\
name: marc_custom
data: {shared_data/'marc'}
languages: [zh, en, fr, de, es]
text: [review_title, review_body]
optional_text: [review_title]
label: stars
label_map: {{1: 0, 2: 0, 3: null, 4: 1, 5: 1}}
parallel: false
lr: 2.0e-5
epochs: 5
''', encoding='utf-8')
    spec = get_task(tmp_path/'marc.yaml')
    assert spec.class_map == {1: 0, 2: 0, 3: None, 4: 1, 5: 1} and not spec.is_pair and spec.num_labels == 2
    kw = dict(n_train=300, n_dev=50, n_test=200, seed=0)
    assert_same_splits(load_splits(spec, **kw), load_splits('marc', data=shared_data, **kw))
    # the same with TOML's text keys and `drop`
    (tmp_path/'marc.toml').write_text(f'''\
name = "marc_custom2"
data = "{shared_data/'marc'}"
languages = ["zh", "en", "fr", "de", "es"]
text = ["review_title", "review_body"]
optional_text = ["review_title"]
label = "stars"
label_map = {{"1" = 0, "2" = 0, "4" = 1, "5" = 1}}
drop = [3]
parallel = false
lr = 2e-5
epochs = 5
''', encoding='utf-8')
    assert_same_splits(load_splits(tmp_path/'marc.toml', **kw), load_splits('marc', data=shared_data, **kw))

def test_xnli_three_classes_from_a_config(shared_data, tmp_path):
    cfg = dict(name='xnli_3class', data=str(shared_data/'xnli'), languages=['en', 'de', 'ru'], text=['premise', 'hypothesis'],
               label='label', labels=[0, 1, 2], class_names=['entailment', 'neutral', 'contradiction'], parallel=True, lr=2e-5, epochs=4,
               splits={'train': 'train_from_dev'})
    spec = D.task_from_config(cfg)
    assert spec.num_labels == 3 and spec.split_files == XNLI_FROM_DEV and spec.languages == ('en', 'de', 'ru')
    kw = dict(n_train=300, n_dev=100, n_test=200, seed=2)
    want = load_splits('xnli3', langs=['en', 'de', 'ru'], data=shared_data, split_files=XNLI_FROM_DEV, **kw)
    assert_same_splits(load_splits('xnli_3class', **kw), want)
    with pytest.raises(DataError, match=r"No train file for language 'ru'.*split_files"):   # without its [splits], Russian has no train file
        D.task_from_config({k: v for k, v in cfg.items() if k != 'splits'})

@pytest.fixture
def reviews(tmp_path):
    "One csv per split with a `language` column and text labels (3 classes), and its config as a dict."
    root = tmp_path/'reviews'; root.mkdir()
    for split, n in (('train', 12), ('test', 6)):
        pd.DataFrame([{'id': f'{l}{i}', 'language': l, 'review': f'{l} review {i}', 'title': f't{i}', 'rating': ('neg', 'neu', 'pos')[i % 3]}
                      for l in ('en', 'de', 'sw') for i in range(n)]).to_csv(root/f'{split}.csv', index=False)
    return root, dict(name='reviews', data='reviews', text='review', label='rating', labels=['neg', 'neu', 'pos'],
                      parallel=False, lr=1e-3, epochs=2)

def test_text_labels_and_default_languages(reviews, tmp_path):
    root, cfg = reviews
    spec = D.task_from_config(cfg, base=tmp_path)
    assert spec.languages == ('de', 'en', 'sw') and spec.num_labels == 3 and not spec.is_pair and spec.data == str(root)
    sp = load_splits('reviews', n_train=6, n_dev=3, n_test=6)
    assert sp['train'].features['orig_label'].dtype == 'string'
    df = sp['test'].to_pandas()
    assert (df.label == df.orig_label.map({'neg': 0, 'neu': 1, 'pos': 2})).all() and set(df.label) == {0, 1, 2}
    summary = D.check_task_data('reviews')
    assert list(summary.columns) == ['lang', 'split', 'file', 'rows', 'neg', 'neu', 'pos']
    assert summary.rows.tolist() == [12, 6] * 3 and summary.neg.tolist() == [4, 2] * 3
    # two text fields joined into one text (pair = false), and a pair
    two = D.task_from_config({**cfg, 'name': 'reviews2', 'text': ['title', 'review'], 'pair': False}, base=tmp_path)
    assert not two.is_pair and load_task(two, 'test', langs=['en'])[0]['text'] == 't0. en review 0'
    assert D.task_from_config({**cfg, 'name': 'reviews3', 'text': ['title', 'review']}, base=tmp_path).is_pair

@pytest.mark.parametrize('change,msg', [
    (dict(lables=['neg', 'pos']), r"unknown key\(s\) 'lables' \(did you mean 'labels'\?\)"),
    (dict(epochs=None), r'missing key\(s\) epochs: epochs = the fine-tuning epochs'),
    (dict(labels=None), r'missing key\(s\) labels: labels = the label set.*\(or label_map\)'),
    (dict(text=['review', 'body']), r"train.csv has no field 'body' \(task reviews needs review, body, rating; the file has: id, language, review, title, rating\)"),
    (dict(label='stars'), r"has no field 'stars'.*the file has: id, language, review, title, rating"),
    (dict(labels=['pos']), r'1 label\(s\) .*a classification task needs at least 2'),
    (dict(labels=['neg', 'neu', 'pos', 'mixed', 'n/a']), r"label\(s\) 'mixed', 'n/a' of the label set never occur in the 'rating' field"),
    (dict(labels=['neg', 'pos']), r"values of 'rating' outside reviews's label set \('neg', 'pos'\): 'neu'"),
    (dict(languages=['en', 'fr', 'ko']), r'language\(s\) fr, ko not in the data .*Languages found: de, en, sw'),
    (dict(languages=['en']), r'a study needs at least 2 languages; languages lists en'),
    (dict(name='xnli'), r"name 'xnli' is taken by a task defined in code"),
    (dict(name='my task'), r'name must be a name of letters, digits'),
    (dict(data='nowhere'), r'data folder .*nowhere does not exist'),
    (dict(text=[]), r'text must be a text field name or a list'),
    (dict(lr='fast'), r"lr must be a number > 0, not 'fast'"),
    (dict(epochs=0), r'epochs must be an integer >= 1, not 0'),
    (dict(parallel='yes'), r"parallel must be true or false, not 'yes'"),
    (dict(tracin_epochs=[1, 3]), r'tracin_epochs must be a list of epochs between 1 and epochs \(2\)'),
    (dict(focus_lang='fr'), r"focus_lang 'fr' is not one of the languages de, en, sw"),
    (dict(splits={'validation': 'dev'}), r'splits must be a table of file stems for train / dev / test'),
    (dict(label_map={'neg': 0, 'pos': 1}), r"labels \['neg', 'neu', 'pos'\] and label_map/drop \['neg', 'pos'\] must name the same values"),
    (dict(labels=None, label_map={'neg': 0, 'pos': 1}), r"values of 'rating' outside reviews's label set \('neg', 'pos'\): 'neu'"),
    (dict(labels=None, label_map={'neg': 0, 'neu': 'x', 'pos': 1}), r'label_map must be a table of original label -> class id'),
    (dict(labels=None, label_map={'neg': 0, 'neu': 2, 'pos': 1}, drop=['neu']), r"\['neu'\] are both mapped \(label_map\) and dropped"),
    (dict(drop=['meh']), r"drop names \['meh'\], which are not in labels"),
    (dict(optional_text=['review']), r'at least one text field must be required'),
    (dict(text=['review'], pair=True), r'pair = true needs exactly two text fields'),
    (dict(class_names=['bad', 'good']), r'2 class_names for 3 classes'),
])
def test_config_errors(reviews, tmp_path, change, msg):
    root, cfg = reviews
    cfg = {k: v for k, v in {**cfg, **change}.items() if v is not None}
    with pytest.raises(DataError, match=msg): D.task_from_config(cfg, base=tmp_path)

def test_config_drop_with_labels_numbers_the_kept_ones(reviews, tmp_path):
    root, cfg = reviews
    spec = D.task_from_config({**cfg, 'drop': ['neu']}, base=tmp_path)
    assert spec.class_map == {'neg': 0, 'neu': None, 'pos': 1} and spec.num_labels == 2
    assert set(load_task(spec, 'train', langs=['en'])['orig_label']) == {'neg', 'pos'}

def test_config_files_bad_syntax_and_kinds(tmp_path):
    (tmp_path/'a.toml').write_text('name = "x"\nlabels = [0, 1\n')
    with pytest.raises(DataError, match=r'a.toml is not valid TOML'): get_task(tmp_path/'a.toml')
    (tmp_path/'b.yaml').write_text('- just\n- a list\n')
    with pytest.raises(DataError, match=r'b.yaml: expected `key = value` lines, found list'): get_task(tmp_path/'b.yaml')
    with pytest.raises(DataError, match=r'Task config .*c.toml does not exist'): get_task(str(tmp_path/'c.toml'))
    with pytest.raises(DataError, match=r'is a .toml / .yaml / .yml / .json file'): D.task_from_config(tmp_path/'a.txt')

def test_a_config_file_is_read_and_checked_once_per_content(reviews, tmp_path, monkeypatch):
    root, cfg = reviews
    path = tmp_path/'reviews.json'; path.write_text(json.dumps(cfg))
    calls = []
    real = D.check_task_data
    monkeypatch.setattr(D, 'check_task_data', lambda *a, **k: calls.append(1) or real(*a, **k))
    a = get_task(path); b = get_task(str(path)); load_splits(path, n_train=2, n_dev=1, n_test=1)
    assert a is b and len(calls) == 1
    path.write_text(json.dumps({**cfg, 'lr': 5e-4}))                         # a changed file is read again
    assert get_task(path).lr == 5e-4 and len(calls) == 2 and TASKS['reviews'].lr == 5e-4
