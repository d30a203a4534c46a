"Issue 20: the languages keep the order the user gave; train/test overlap is counted, warned about and refused above a threshold."
import pandas as pd, pytest
from datasets import Dataset, DatasetDict
from modtrace.data import check_overlap, load_splits, load_task, split_overlap
from modtrace.sources import DataError
from modtrace.tasks import get_task

def test_languages_keep_the_order_given(shared_data):
    sp = load_splits('xnli', langs=['en', 'de', 'fr', 'es'], n_train=10, n_dev=5, n_test=5, data=shared_data/'xnli',
                     split_files={'train': 'train_from_dev'})
    for s in ('train', 'dev', 'test'): assert list(dict.fromkeys(sp[s]['lang'])) == ['en', 'de', 'fr', 'es'], s
    assert load_task('marc', 'test', langs=['en', 'zh'], data=shared_data/'marc').unique('lang') == ['en', 'zh']
    default = load_splits('xnli', n_train=10, n_dev=5, n_test=5, data=shared_data/'xnli', split_files={'train': 'train_from_dev'})
    assert list(dict.fromkeys(default['test']['lang'])) == list(get_task('xnli').languages)     # default: the task's order

def ds(rows): return Dataset.from_pandas(pd.DataFrame(rows, columns=['id', 'lang', 'text', 'text_pair']), preserve_index=False)

def splits(parallel=False, same_text=0, same_id=0, n=100):
    "Train and test of two languages; `same_text` test rows copy a train row's text, `same_id` reuse a train (lang, id)."
    langs = ['en', 'de']
    train = [(f'tr{i}' if parallel else f'{l}-tr{i}', l, f'{l} train {i}', f'{l} pair {i}') for l in langs for i in range(n)]
    test = [(f'te{i}' if parallel else f'{l}-te{i}', l, f'{l} test {i}', f'{l} pair t{i}') for l in langs for i in range(n)]
    for i in range(same_text): test[i] = (test[i][0], 'en', f'en train {i}', f'en pair {i}')
    for i in range(same_id): test[n + i] = (f'de-tr{i}', 'de', test[n + i][2], test[n + i][3])
    return DatasetDict(train=ds(train), test=ds(test))

def test_split_overlap_counts_same_text_and_same_lang_id():
    o = split_overlap(splits(same_text=3, same_id=2))
    assert (o['n_test'], o['same_text'], o['same_id'], o['overlap']) == (200, 3, 2, 5)
    assert split_overlap(splits())['overlap'] == 0
    assert split_overlap(DatasetDict(train=ds([('1', 'en', 'a', 'b')]), test=ds([('9', 'en', 'a', 'c')])))['same_text'] == 0  # the pair differs

def test_parallel_ids_are_not_counted_as_overlap():
    sp = splits(parallel=True)                                  # the same ids in every language of train, numbered anew in test
    sp['test'] = ds([(f'tr{i}', l, f'{l} test {i}', f'{l} pair t{i}') for l in ('en', 'de') for i in range(100)])
    o = split_overlap(sp)
    assert o['same_id'] is None and o['overlap'] == 0

def test_check_overlap_warns_and_refuses_above_the_threshold():
    said = []
    assert check_overlap(splits(), log=said.append)['overlap'] == 0 and said == []
    check_overlap(splits(same_text=1), log=said.append)          # 1 of 200: below 1%, a warning
    assert len(said) == 1 and '1 of 200 test examples' in said[0]
    with pytest.raises(DataError) as e: check_overlap(splits(same_text=3, same_id=2), log=said.append)
    assert '5 of 200 test examples' in str(e.value) and 'allow=True' in str(e.value) and e.value.info['option'] == 'allow_overlap'
    assert check_overlap(splits(same_text=3, same_id=2), allow=True, log=said.append)['overlap'] == 5
    assert check_overlap(splits(same_text=3), max_share=0.05, log=said.append)['overlap'] == 3
