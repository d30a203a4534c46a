"""Several attribution methods in one study (issue 21): the gradient dot product and exact TracIn as methods, each
method's results in its own folder, and their agreement, checked against computations of the test's own."""
import json, re
import numpy as np, pandas as pd, pytest, torch
from types import SimpleNamespace
from test_study import kw
from modtrace.batching import example_loader
from modtrace.config import OptionError, StudyConfig
from modtrace.finetune import checkpoint_dir
from modtrace.methods import METHODS
from modtrace.model import load_checkpoint, load_model
from modtrace.sketch import explicit_grads
from modtrace.stages import prepare
from modtrace.store import SketchStore
from modtrace.study import Study, run_study
from modtrace.tracing import method_agreement, share_matrix
torch.set_num_threads(1)

def test_the_methods_are_registered_and_an_unknown_one_is_refused_before_any_work(tmp_path, tiny_folder, shared_data):
    assert {'tracin', 'gradient-dot', 'tracin-exact', 'ekfac'} <= set(METHODS)
    assert StudyConfig.make(method='gradient-dot').method == ['gradient-dot']                  # one name, or several
    assert StudyConfig.make(method=['tracin', 'gradient-dot', 'tracin']).method == ['tracin', 'gradient-dot']
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    with pytest.raises(OptionError, match="method must be one of ekfac, gradient-dot, tracin, tracin-exact, not 'trak'"):
        run_study(**c, method=['tracin', 'trak'], log=lambda *a: None)
    assert not (tmp_path/'pawsx').exists()                                                    # nothing was started

def test_agreement_against_numpy():
    "Each pair's Fig. 10 correlation and top-m overlap, against np.corrcoef and set intersections by hand."
    rng = np.random.default_rng(0)
    langs = ['a', 'b', 'c']
    def shares(seed):
        r = np.random.default_rng(seed).dirichlet(np.ones(3), 12)
        return pd.DataFrame({'variant': 'full', 'which': np.repeat(['pos', 'neg'], 6), 'epoch': 'sum', 'correct': [True] * 11 + [False],
                             'lang': langs * 4, **{l: r[:, i] for i, l in enumerate(langs)}})
    tops = {k: SimpleNamespace(top_idx=rng.integers(0, 30, (6, 4)), neg_idx=rng.integers(0, 30, (6, 4))) for k in 'XY'}
    sh = {'X': shares(1), 'Y': shares(2)}
    got = method_agreement(tops, sh, langs).set_index('which')
    for which, idx in (('pos', 'top_idx'), ('neg', 'neg_idx')):
        mats = []
        for k in 'XY':
            s = sh[k][(sh[k].which == which) & sh[k].correct]
            mats.append(np.array([[100 * s[s.lang == t][l].mean() for l in langs] for t in langs]).ravel())
        assert got.loc[which, 'pearson_r'] == pytest.approx(np.corrcoef(*mats)[0, 1])
        by_hand = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(getattr(tops['X'], idx), getattr(tops['Y'], idx))])
        assert got.loc[which, 'top_m_overlap'] == pytest.approx(by_hand)
    assert share_matrix(sh['X'], langs).shape == (3, 3)

def test_a_study_of_three_methods(tmp_path, tiny_folder, shared_data):
    "TracIn, the gradient dot product and exact TracIn: one fine-tuning, shared sketches, each method's results and their agreement."
    st = run_study(**kw(tiny_folder, shared_data, tmp_path), method=['tracin', 'gradient-dot', 'tracin-exact'], check_estimator=0,
                   layer_groups=False)
    run = tmp_path/'pawsx'
    rec = json.loads((run/'study.json').read_text())
    assert rec['settings']['method'] == ['tracin', 'gradient-dot', 'tracin-exact']
    more = rec['stages']['methods']
    key = lambda f: json.loads((run/f/'stage.json').read_text())['key']
    tracin, dot, exact = key(rec['stages']['influence']['full']), key(more['gradient-dot']['influence']['full']), key(more['tracin-exact']['influence']['full'])
    assert (dot['test'], dot['train']) == (tracin['test'], tracin['train'])      # the gradient dot product reads TracIn's sketches
    assert exact['test'] != tracin['test'] and dot['norm'] == 'dot'
    for m in ('gradient-dot', 'tracin-exact'):
        assert (run/'figures'/m/'fig10_full_positive.csv').exists() and (run/'figures'/m/'table2_accuracy.csv').exists()
    assert (run/'figures'/'fig10_full_positive.csv').exists()                    # the first method's: the study's own
    agree = pd.read_csv(run/'figures'/'method_agreement.csv')
    assert len(agree) == 3 * 2 and set(agree.method_a) | set(agree.method_b) == {'TracIn', 'gradient dot product', 'TracIn (exact gradients)'}
    assert agree[['pearson_r', 'top_m_overlap']].notna().all().all() and agree.top_m_overlap.between(0, 1).all()
    loaded = Study.load(run)
    assert set(loaded.by_method) == {'gradient-dot', 'tracin-exact'} and loaded.agreement.equals(agree)
    assert st.plot('fig10_full_positive') is not None
    from modtrace.results import plot_result                                     # titles carry the method's label
    fig = plot_result('fig10_full_positive', loaded.by_method['gradient-dot'], loaded.masks, top_m=10, focus=loaded.settings['focus'], label='gradient dot product')
    assert fig.axes[0].get_title().startswith('gradient dot product: ')
    # exact TracIn's stored features are the per-example gradients, computed here one example at a time
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    d = prepare(StudyConfig.make(**c), log=lambda *a: None)
    store = SketchStore(run/exact['train']/'epoch-2')
    model = load_model(tiny_folder, 'sequence', num_labels=2)
    load_checkpoint(model, checkpoint_dir(run/rec['stages']['full'], 2))
    rows = d.splits['train'].select(range(6))
    X = explicit_grads(model.eval(), next(iter(example_loader(rows, model.config.pad_token_id, 6))), layers=[f'^{re.escape(n)}$' for n in store.header['layers']])
    torch.testing.assert_close(store.rows(0, 6).float(), X, atol=1e-5, rtol=1e-4)

def test_the_lds_of_a_study_against_retraining_and_spearman_by_hand(tmp_path, tiny_folder, shared_data):
    "`--lds 4`: each retraining equals fine-tuning that half by hand; each method's LDS equals Spearman over the halves by hand."
    from scipy import stats
    from modtrace.finetune import finetune, predict
    from modtrace.methods import lds as lds_fn, method_named, subset_draws
    st = run_study(**kw(tiny_folder, shared_data, tmp_path), method=['tracin', 'gradient-dot'], lds=4, check_estimator=0, layer_groups=False,
                   workers=2)                                                    # halves 0 and 2 retrained here, 1 and 3 by a worker
    run = tmp_path/'pawsx'
    rec = json.loads((run/'study.json').read_text())
    table = pd.read_csv(run/'figures'/'lds.csv')
    assert list(table.attribution) == ['TracIn', 'gradient dot product', 'random scores', 'label balance alone']
    assert st.lds.equals(table) and (table.M == 4).all() and (table.ci_over == 'subsets').all()
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    d = prepare(StudyConfig.make(**c), log=lambda *a: None)
    subsets = subset_draws(len(d.splits['train']), 4, 0.5, 0)
    retrains = json.loads((run/rec['stages']['lds']/'stage.json').read_text())['key']['retrains']
    outputs = np.stack([pd.read_csv(run/f/'outputs.csv')['output'].to_numpy() for f in retrains])
    for j in (0, 1):
        ft = finetune(d.model(), d.tok, {'train': d.splits['train'].select(np.flatnonzero(subsets[j]))}, tmp_path/f'by-hand-{j}', progress=False, **d.ft)
        np.testing.assert_allclose(outputs[j], -predict(ft.model, d.splits['test'], progress=False)['loss'].to_numpy(), rtol=1e-5, atol=1e-6)
    infl = json.loads((run/rec['stages']['influence']['full']/'stage.json').read_text())['key']
    te = [SketchStore(run/infl['test']/f'epoch-{e}') for e in (1, 2)]
    tr = [SketchStore(run/infl['train']/f'epoch-{e}') for e in (1, 2)]
    S = method_named('tracin').full_scores(te, tr, StudyConfig.make(**c)).double().numpy()
    pred = subsets.astype(float) @ S.T                                             # (M, n_test) summed attributions
    rho = [stats.spearmanr(pred[:, i], outputs[:, i])[0] for i in range(S.shape[0])]
    assert table.set_index('attribution').loc['TracIn', 'lds'] == pytest.approx(np.nanmean(rho), abs=1e-9)
    assert table.set_index('attribution').loc['TracIn', 'lds'] == pytest.approx(lds_fn(S, subsets, outputs)['lds'])
    with pytest.raises(OptionError, match='leave --keep-stores on'): StudyConfig.make(lds=4, keep_stores=False)
    with pytest.raises(OptionError, match='lds must be 0'): StudyConfig.make(lds=1)

def test_removal_sets_are_the_top_summed_scores_of_each_group():
    from modtrace.tracing import removal_sets
    rng = np.random.default_rng(1)
    S, te, tr = rng.standard_normal((6, 10)), np.array(list('aabbcc')), np.array(list('aaabbbbccc'))
    got = removal_sets(S, te, tr, 'b', 2)
    total = S[2:4].sum(0)
    assert sorted(got['own language']) == sorted(sorted(range(3, 7), key=lambda i: -total[i])[:2])
    assert sorted(got['other languages']) == sorted(sorted([0, 1, 2, 7, 8, 9], key=lambda i: -total[i])[:2])

def test_the_removal_test_against_retraining_by_hand(tmp_path, tiny_folder, shared_data):
    "`--removal 2`: a language's top-m own-language proponents removed; the change in its test loss equals fine-tuning with and without them by hand."
    from modtrace.finetune import finetune, predict
    from modtrace.methods import method_named
    from modtrace.tracing import removal_sets
    st = run_study(**kw(tiny_folder, shared_data, tmp_path), removal=2, check_estimator=0, layer_groups=False)
    run = tmp_path/'pawsx'
    table = pd.read_csv(run/'figures'/'removal.csv')
    assert st.removal.equals(table) and len(table) == 5 * 2 and (table.retrainings == 2).all()
    assert table[['d_loss_top', 'd_loss_random', 'd_loss_top_lo', 'd_accuracy_top']].notna().all().all()
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    cfg = StudyConfig.make(**c)
    d = prepare(cfg, log=lambda *a: None)
    rec = json.loads((run/'study.json').read_text())
    infl = json.loads((run/rec['stages']['influence']['full']/'stage.json').read_text())['key']
    te, tr = ([SketchStore(run/infl[k]/f'epoch-{e}') for e in (1, 2)] for k in ('test', 'train'))
    S = method_named('tracin').full_scores(te, tr, cfg).double().numpy()
    te_lang, tr_lang = (np.asarray(d.splits[k]['lang']) for k in ('test', 'train'))
    lang = 'de'
    top = removal_sets(S, te_lang, tr_lang, lang, cfg.top_m)['own language']
    keep = np.ones(len(tr_lang), bool); keep[top] = False
    def loss(train, seed):
        ft = finetune(d.model(), d.tok, {'train': train}, tmp_path/f'by-hand-{len(train)}-{seed}', progress=False, **{**d.ft, 'seed': seed})
        return predict(ft.model, d.splits['test'], progress=False)['loss'].to_numpy()[te_lang == lang].mean()
    without = d.splits['train'].select(np.flatnonzero(keep))
    by_hand = [loss(without, cfg.seed + r) - loss(d.splits['train'], cfg.seed + r) for r in (0, 1)]   # paired by seed
    row = table[(table.test_lang == lang) & (table.proponents == 'own language')].iloc[0]
    assert row.d_loss_top == pytest.approx(np.mean(by_hand), abs=1e-5)
    assert len(list(run.glob('retrain-*'))) == 2 + 5 * 2 * 2 * 2                # the base, and per language 2 groups x (top, random) x 2

def test_the_removal_test_repeats_until_the_interval_separates(monkeypatch):
    "Retraining replaced by a known response: removing language a's top-2 raises its test loss by 1 (clear at once); nothing moves b's (noise alone)."
    from datasets import Dataset
    import modtrace.tracing as tracing
    train = Dataset.from_dict({'id': [str(i) for i in range(20)], 'lang': ['a'] * 10 + ['b'] * 10})
    test = Dataset.from_dict({'id': [f't{i}' for i in range(4)], 'lang': ['a', 'a', 'b', 'b']})
    d = SimpleNamespace(splits={'train': train, 'test': test}, langs=['a', 'b'], hp={'task': 'toy'})
    S = np.zeros((4, 20)); S[:2, :2] = 1; S[:2, 12:14] = 1; S[2:, 10:12] = 1           # a's proponents: 0, 1 (own), 12, 13 (other)
    method = SimpleNamespace(name='toy', label='toy', full_scores=lambda *a: torch.as_tensor(S))
    calls = []
    def fake(run, d, c, jobs, log, what):
        calls.append(len(jobs))
        out = []
        for keep, j, seed in jobs:
            noise = np.random.default_rng([seed, *np.flatnonzero(~keep)]).normal(0, 1, 4)
            loss = np.r_[[1.0 * (not keep[0] and not keep[1]) + 0.01 * noise[0]] * 2, noise[2:]]   # a: the effect; b: noise
            out.append(pd.DataFrame({'id': test['id'], 'lang': test['lang'], 'output': -loss, 'accuracy': 0.5}))
        return out
    monkeypatch.setattr(tracing, 'retrain_all', fake)
    said = []
    table = tracing.removal_test(None, d, StudyConfig.make(removal=8, top_m=2), [method], {'toy': ((), ())}, log=said.append).set_index(['test_lang', 'proponents'])
    assert len(table) == 4 and table.retrainings.between(3, 8).all()
    assert table.loc[('a', 'own language'), 'separates'] and table.loc[('a', 'own language'), 'retrainings'] == 3   # clear at the first look
    assert table.loc[('a', 'own language'), 'd_loss_top'] == pytest.approx(1.0, abs=0.05)
    assert (table.separates | (table.retrainings == 8)).all()                                # stopped early only once separated
    assert not table.loc[('b', 'own language'), 'separates'] and table.loc[('b', 'own language'), 'retrainings'] == 8
    assert calls[0] == 3 * (1 + 4 * 2) and len(calls) == 1 + (8 - 3) and said and 'do not separate after 3 retrainings' in said[0]
