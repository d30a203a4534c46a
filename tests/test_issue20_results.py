"Issue 20: a two-language study gets every result, with n/a where a statistic needs 3 points; statistics of a model that predicts one class are flagged in their CSVs."
import numpy as np, pandas as pd, torch
from modtrace.results import RESULTS, ResultInputs, study_results, study_variants, write_results

XI = {'en': torch.tensor([[1., 1, 0, 0], [1, 0, 1, 1]]), 'de': torch.tensor([[1., 1, 1, 0], [0, 1, 1, 1]]),
      'fr': torch.tensor([[0., 1, 1, 1], [1, 1, 0, 1]])}

def inputs(langs, n=8, one_class=None, relatedness=True):
    "Shares of every variant (each leaning on its own language by a known amount, varying by test language), predictions, accuracies."
    xi = {l: XI[l] for l in langs}
    vs = study_variants(xi, xi, langs[0], langs[1:], [(langs[0], langs[1])])
    rows = []
    for i, v in enumerate(vs):
        for e in ('sum', '1', '2'):
            for w in ('pos', 'neg'):
                for j, l in enumerate(v.test):
                    for k in range(n):
                        own = 0.2 + i / 50 + j / 20 + k / 200 + (e == '2') / 30
                        pred = 0 if v.name == one_class else k % 2
                        rows.append({'test_row': k, 'id': str(k), 'lang': l, 'correct': pred == k % 2 or k < n // 2, 'epoch': e,
                                     'which': w, 'variant': v.name, 'label': k % 2, 'pred': pred,
                                     **{t: own if t == l else (1 - own) / (len(langs) - 1) for t in langs}})
    acc = {r: [{'test': {l: .6 + e / 10 + j / 50 for j, l in enumerate([*langs, 'all'])}} for e in range(2)]
           for r in ('full FT', 'SFT', 'random SFT')}
    R = pd.DataFrame(np.eye(len(langs)) + 0.3 * (1 - np.eye(len(langs))), index=langs, columns=langs) if relatedness else None
    full = pd.DataFrame(rows).query("variant == 'full' and which == 'pos' and epoch == 'sum'")
    groups = pd.concat([full.assign(group=g) for g in ('lower', 'upper')])
    return ResultInputs(pd.DataFrame(rows), acc, xi, vs, langs[0], [(langs[0], langs[1])], relatedness=R, n_boot=20, groups=groups)

def test_a_two_language_study_gets_every_result_with_na_where_three_points_are_needed(tmp_path):
    ctx = inputs(['en', 'de'])
    res = study_results(ctx)
    want = {r.stem(ctx) for r in RESULTS} - {'estimator_check', 'mask_specificity'}   # those two: from other stages
    assert sorted(want - set(res)) == []
    for name in ('fig8_similarity_vs_influence_stats', 'fig9_layer_correlation', 'fig15_overlap_vs_influence_stats_positive',
                 'relatedness_vs_influence_stats', 'relatedness_by_group'):
        st = res[name]
        assert st[['pearson_r', 'spearman_rho', 'pearson_p']].isna().all().all(), name
        assert st['note'].str.contains('at least 3 points').all(), name
    assert res['fig7_specialization_vs_accuracy_stats']['pearson_r'].notna().all()      # 2 languages x 2 checkpoints: 4 points
    files = {p.name for p in (tmp_path/'figures').iterdir()} if write_results(res, tmp_path/'figures', XI, focus='en') else set()
    assert {'fig8_similarity_vs_influence.svg', 'fig8_similarity_vs_influence.stats.csv', 'fig9_layer_correlation.png',
            'relatedness_vs_influence.stats.csv', 'table2_accuracy.csv'} <= files
    st = pd.read_csv(tmp_path/'figures'/'fig8_similarity_vs_influence.stats.csv')
    assert np.isnan(st['pearson_r'][0]) and 'at least 3 points' in st['note'][0]

def test_statistics_of_a_model_that_predicts_one_class_are_flagged_in_the_csvs(tmp_path):
    res = study_results(inputs(['en', 'de', 'fr'], one_class='sft/de'))
    assert res['model_health'].set_index('variant').loc[['sft/de'], 'warning'].tolist() == ['predicts one class']
    flagged = ['fig7_specialization_vs_accuracy_stats', 'fig8_similarity_vs_influence_stats', 'fig9_layer_correlation',
               'fig15_overlap_vs_influence_stats_positive', 'fig15_overlap_vs_influence_stats_negative']
    for name in flagged: assert res[name]['health'].str.contains('predicts one class: SFT').all(), name
    assert not res['relatedness_vs_influence_stats']['health'].str.contains('SFT').any()   # the full model's statistic: not SFT's
    write_results(res, tmp_path/'figures', XI, focus='en')
    for stem in ('fig8_similarity_vs_influence.stats', 'fig15_overlap_vs_influence.stats', 'fig7_specialization_vs_accuracy.stats',
                 'fig9_layer_correlation'):
        st = pd.read_csv(tmp_path/'figures'/f'{stem}.csv')
        assert st['health'].str.contains('predicts one class').all() and st['pearson_r'].notna().any(), stem

def test_healthy_models_statistics_have_an_empty_health_flag():
    res = study_results(inputs(['en', 'de', 'fr']))
    assert res['fig8_similarity_vs_influence_stats']['health'].tolist() == ['']
