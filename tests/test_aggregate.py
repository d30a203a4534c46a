"Tests of modtrace.aggregate: shares, contributions, Δ (both-correct, matched by id), specialization, correlations, bad input."
import numpy as np, pandas as pd, pytest, torch
from modtrace.influence import Influence
from modtrace.aggregate import (example_shares, contributions, delta, specialization, correlation,
                                relatedness_agreement, lang_columns)

LANGS = ['en', 'fr', 'de']

def make_influence(top, neg, test_lang, correct, train_lang=('en', 'en', 'fr', 'de')):
    "An Influence with hand-picked top-m / bottom-m training rows."
    train = pd.DataFrame({'id': [f't{i}' for i in range(len(train_lang))], 'lang': list(train_lang)})
    test = pd.DataFrame({'id': [f'q{i}' for i in range(len(top))], 'lang': list(test_lang), 'correct': list(correct)})
    z = torch.zeros(len(top), len(top[0]))
    return Influence(torch.tensor(top), z, z[..., None], torch.tensor(neg), z, z[..., None], test, train)

@pytest.fixture
def inf():
    return make_influence(top=[[0, 1, 2, 3], [0, 0, 1, 2], [2, 2, 3, 0], [2, 3, 3, 3]],
                          neg=[[3, 3, 3, 3], [2, 3, 2, 3], [0, 1, 0, 1], [0, 2, 0, 2]],
                          test_lang=['en', 'en', 'fr', 'fr'], correct=[True, True, True, False])

def random_shares(n=30, seed=0, langs=LANGS):
    "Shares of n test examples per language, drawn as multinomial counts out of m = 20."
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame(rng.multinomial(20, np.ones(len(langs)) / len(langs), size=n) / 20, columns=langs)
              .assign(id=[str(i) for i in range(n)], lang=l, correct=rng.random(n) < .8) for l in langs]
    return pd.concat(frames, ignore_index=True)

def test_shares_known_by_construction(inf):
    s = example_shares(inf)
    assert s.columns.tolist() == ['test_row', 'id', 'lang', 'correct', 'en', 'fr', 'de']
    assert s[LANGS].to_numpy().tolist() == [[.5, .25, .25], [.75, .25, 0], [.25, .5, .25], [0, .25, .75]]
    assert example_shares(inf, 'neg')['de'].tolist() == [1, .5, 0, 0]
    assert example_shares(inf, langs=['de', 'en', 'ko']).columns.tolist()[-3:] == ['de', 'en', 'ko']

def test_contributions_means_in_percent_and_cis_bracket(inf):
    c = contributions(example_shares(inf)).set_index(['test_lang', 'train_lang'])
    assert c.loc[('en', 'en'), 'value'] == pytest.approx(62.5) and c.loc[('en', 'en'), 'n'] == 2
    assert c.loc[('fr', 'fr'), 'value'] == pytest.approx(50.) and c.loc[('fr', 'fr'), 'n'] == 1   # q3 misclassified
    assert np.isnan(c.loc[('fr', 'fr'), 'lo']) and np.isnan(c.loc[('fr', 'fr'), 'hi'])            # n < 2: no CI, no crash
    C = contributions(random_shares(), n_boot=300)
    assert (C['lo'] <= C['value']).all() and (C['value'] <= C['hi']).all() and (C['hi'] > C['lo']).all()
    assert np.allclose(C.groupby('test_lang')['value'].sum(), 100)
    assert C.equals(contributions(random_shares(), n_boot=300))                                      # seeded

def test_contributions_keep_and_no_kept_rows(inf):
    s = example_shares(inf)
    c = contributions(s, keep=pd.Series([False, True, False, False])).set_index(['test_lang', 'train_lang'])
    assert c.loc[('en', 'en'), 'value'] == pytest.approx(75.) and c.loc[('fr', 'en'), 'n'] == 0
    assert np.isnan(c.loc[('fr', 'en'), 'value'])

def test_delta_keeps_both_correct_and_matches_by_id():
    sub = random_shares(seed=1)
    base = random_shares(seed=2)
    d = delta(sub, base.sample(frac=1, random_state=0), n_boot=200).set_index(['test_lang', 'train_lang'])
    both = sub.merge(base, on=['id', 'lang'], suffixes=('', '_b'))
    both = both[both.correct & both.correct_b]
    for t in LANGS:
        g = both[both.lang == t]
        assert d.loc[(t, 'fr'), 'n'] == len(g)
        assert d.loc[(t, 'fr'), 'value'] == pytest.approx(100 * (g['fr'] - g['fr_b']).mean())
        assert d.loc[(t, 'fr'), 'lo'] <= d.loc[(t, 'fr'), 'value'] <= d.loc[(t, 'fr'), 'hi']

def test_delta_of_identical_inputs_is_zero():
    s = random_shares()
    d = delta(s, s[::-1].reset_index(drop=True), n_boot=200)
    assert np.allclose(d['value'], 0) and (d['lo'] <= 0).all() and (d['hi'] >= 0).all()

def test_delta_only_subs_test_languages_and_parallel_ids():
    base = random_shares()                                       # the same ids in every language (parallel task)
    sub = base[base.lang == 'fr'].assign(fr=1.0, en=0.0, de=0.0)
    d = delta(sub, base, n_boot=100)
    assert set(d['test_lang']) == {'fr'}
    g = base[(base.lang == 'fr') & base.correct]
    assert d.set_index('train_lang').loc['fr', 'value'] == pytest.approx(100 * (1 - g['fr']).mean())

def test_specialization_is_the_diagonal():
    s = random_shares()
    sp, C = specialization(s, n_boot=100), contributions(s, n_boot=100)
    assert sp.columns.tolist() == ['test_lang', 'value', 'lo', 'hi', 'n'] and sp['test_lang'].tolist() == LANGS
    assert np.allclose(sp['value'], [C[(C.test_lang == l) & (C.train_lang == l)]['value'].item() for l in LANGS])

def test_correlation_fields_and_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30); y = 2 * x + rng.normal(size=30)
    r = correlation(x, y, n_boot=200)
    assert r.index.tolist() == ['n', 'pearson_r', 'pearson_p', 'pearson_lo', 'pearson_hi',
                                'spearman_rho', 'spearman_p', 'spearman_lo', 'spearman_hi', 'ci_over', 'p_over', 'note']
    assert r['pearson_r'] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert r['pearson_lo'] < r['pearson_r'] < r['pearson_hi'] and r['spearman_lo'] <= r['spearman_rho'] <= r['spearman_hi']
    assert correlation([1, 2, np.nan, 3, 4], [2, 4, 5, 6, 9])['n'] == 4                        # missing pairs left out
    two = correlation([1, 2, np.nan], [3, 4, 5])                                               # too few points: n/a, with why (issue 20)
    assert two['n'] == 2 and two[['pearson_r', 'spearman_rho', 'pearson_p']].isna().all() and 'at least 3 points' in two['note']

def test_relatedness_agreement_monotone_is_one():
    L = ['a', 'b', 'c', 'd']
    R = pd.DataFrame([[1, .6, .3, .1], [.6, 1, .2, .05], [.3, .2, 1, .4], [.1, .05, .4, 1]], index=L, columns=L)
    rows = np.concatenate([R.loc[[l] * 6].to_numpy() for l in L])
    s = pd.DataFrame(rows / rows.sum(1, keepdims=True), columns=L).assign(id='x', lang=np.repeat(L, 6), correct=True)
    pairs, st = relatedness_agreement(s, R, n_boot=100)
    assert pairs[['lang_a', 'lang_b']].values.tolist() == [['a', 'b'], ['a', 'c'], ['a', 'd'], ['b', 'c'], ['b', 'd'], ['c', 'd']]
    C = contributions(s, n_boot=10).set_index(['test_lang', 'train_lang'])['value']
    assert pairs.set_index(['lang_a', 'lang_b']).loc[('a', 'c'), 'influence'] == pytest.approx((C['a', 'c'] + C['c', 'a']) / 2)
    assert st['spearman_rho'] == pytest.approx(1.) and st['n'] == 6 and st['n_examples'] == 24

@pytest.mark.parametrize('call, msg', [
    (lambda i, s: example_shares(i, 'top'), "'pos' (proponents) or 'neg'"),
    (lambda i, s: contributions(s[['id', 'lang', 'correct']]), 'no language columns'),
    (lambda i, s: contributions(s, langs=['en', 'ko']), "['ko']"),
    (lambda i, s: contributions(s.drop(columns='correct')), 'pass keep='),
    (lambda i, s: contributions(s, keep=[True]), 'one boolean per row'),
    (lambda i, s: delta(s, pd.concat([s, s])), 'several rows'),
    (lambda i, s: delta(s, s.assign(id=s.id + 'x')), 'No test example'),
    (lambda i, s: correlation([1, 2, 3], [1, 2]), 'differ in length'),
    (lambda i, s: relatedness_agreement(s, pd.DataFrame([[1, .5], [.2, 1]], index=['en', 'fr'], columns=['en', 'fr'])), 'symmetric'),
    (lambda i, s: relatedness_agreement(s, pd.DataFrame(np.eye(3), index=LANGS, columns=LANGS)), 'fewer than 2'),
])
def test_clear_errors(inf, call, msg):
    with pytest.raises(ValueError) as e: call(inf, example_shares(inf))
    assert msg in str(e.value), str(e.value)

def test_language_columns_after_csv(tmp_path, inf):
    s = example_shares(inf).assign(variant='full', which='pos', epoch='sum')
    s.to_csv(tmp_path/'s.csv', index=False)
    assert lang_columns(pd.read_csv(tmp_path/'s.csv', dtype={'epoch': str})) == LANGS
