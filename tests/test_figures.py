"Tests of modtrace.figures: files written (png, svg, csv) with the numbers plotted, orders, annotations, bad input."
import matplotlib
matplotlib.use('Agg')
import numpy as np, pandas as pd, pytest
from modtrace.figures import (plot_contributions, plot_correlation, plot_layer_correlation, plot_specialization_curves,
                              table2, plot_accuracy_table)
from modtrace.aggregate import contributions
from modtrace.figures import save_figure

def tidy(delta=True):
    return pd.DataFrame({'test_lang': ['de'] * 3 + ['en'] * 3, 'train_lang': ['de', 'en', 'ko'] * 2,
                         'value': [3.1, -1.0, -2.1, 0.5, 4.0, -4.5] if delta else [40., 35., 25., 20., 70., 10.],
                         'lo': [1.2, -2.5, -3.0, -0.4, 2.2, -6.0], 'hi': [5.0, 0.3, -1.1, 1.5, 5.9, -3.1], 'n': [40] * 6})

def written(stem):
    return all(stem.with_suffix(s).exists() and stem.with_suffix(s).stat().st_size > 0 for s in ('.png', '.svg', '.csv'))

def test_contributions_heatmap_files_numbers_and_order(tmp_path):
    fig = plot_contributions(tidy(), tmp_path/'fig2', title='Δ', delta=True)
    assert written(tmp_path/'fig2')
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'fig2.csv'), tidy())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['de', 'en', 'ko']            # the given order, not sorted
    assert [t.get_text() for t in ax.get_yticklabels()] == ['de', 'en']
    assert ax.texts[0].get_text() == '+3.1\n[1.2, 5.0]'
    assert np.allclose(ax.collections[0].get_array().reshape(2, 3), tidy()['value'].to_numpy().reshape(2, 3))
    assert ax.collections[0].norm.vmin == -ax.collections[0].norm.vmax                   # diverging, centred at 0

def test_contributions_absolute_rows_and_no_ci(tmp_path):
    t = tidy(delta=False).assign(variant=['own'] * 3 + ['random 0'] * 3, lo=np.nan, hi=np.nan)
    fig = plot_contributions(t, tmp_path/'fig3', rows='variant')
    assert written(tmp_path/'fig3') and fig.axes[0].texts[0].get_text() == '40.0'
    assert [x.get_text() for x in fig.axes[0].get_yticklabels()] == ['own', 'random 0']

def test_contributions_from_aggregate(tmp_path):
    rng = np.random.default_rng(0)
    s = pd.DataFrame(rng.dirichlet(np.ones(2), 20), columns=['fr', 'en']).assign(id='x', lang=['fr', 'en'] * 10, correct=True)
    C = contributions(s, n_boot=50)
    plot_contributions(C, tmp_path/'c')
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'c.csv'), C)

def test_correlation_plot_stats(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({'x': rng.normal(size=12), 'lang': ['a', 'b', 'c'] * 4}); df['y'] = df.x + rng.normal(0, .3, 12)
    fig = plot_correlation(df, 'x', 'y', tmp_path/'fig7', hue='lang', title='t')
    assert written(tmp_path/'fig7')
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'fig7.csv'), df)
    st = pd.read_csv(tmp_path/'fig7.stats.csv').iloc[0]
    assert st['pearson_r'] == pytest.approx(np.corrcoef(df.x, df.y)[0, 1])
    assert f"r = {st['pearson_r']:.2f}" in fig.axes[0].get_title() and 'Spearman ρ' in fig.axes[0].get_title()

def test_correlation_plot_given_stats_and_labels(tmp_path):
    df = pd.DataFrame({'lang_a': ['a', 'a', 'b'], 'lang_b': ['b', 'c', 'c'], 'influence': [20., 12., 9.], 'relatedness': [.6, .3, .2]})
    st = pd.Series(dict(n=3, pearson_r=.5, pearson_p=.1, pearson_lo=.1, pearson_hi=.9, spearman_rho=.7, spearman_p=.2,
                        spearman_lo=.2, spearman_hi=.95))
    fig = plot_correlation(df, 'relatedness', 'influence', stats=st, label=['lang_a', 'lang_b'])
    assert 'r = 0.50 [0.10, 0.90]' in fig.axes[0].get_title() and 'ρ = 0.70 [0.20, 0.95]' in fig.axes[0].get_title()
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ['a–b', 'a–c', 'b–c']

def test_layer_and_specialization_and_table(tmp_path):
    L = pd.DataFrame({'layer': range(3), 'pearson_r': [.1, .5, -.2], 'pearson_lo': [-.3, .1, -.6], 'pearson_hi': [.5, .8, .2],
                      'spearman_rho': [0, .4, -.1], 'spearman_lo': [-.4, 0, -.5], 'spearman_hi': [.4, .7, .3]})
    fig = plot_layer_correlation(L, tmp_path/'fig9')
    assert written(tmp_path/'fig9') and [p.get_height() for p in fig.axes[0].patches][:3] == pytest.approx([.1, .5, -.2])
    S = pd.DataFrame([(m, e, l, 10 * e + i, 10 * e + i - 2, 10 * e + i + 2) for m in ('full FT', 'SFT') for e in (1, 2)
                      for i, l in enumerate(('de', 'en'))], columns=['model', 'epoch', 'test_lang', 'value', 'lo', 'hi'])
    fig = plot_specialization_curves(S, tmp_path/'fig16')
    assert written(tmp_path/'fig16') and [a.get_title() for a in fig.axes] == ['full FT', 'SFT']
    assert fig.axes[0].lines[1].get_ydata().tolist() == [11, 21]
    t2 = table2({'full FT': {'epochs': [{'test': {'de': .68, 'all': .7}}]}, 'SFT': [{'test': {'de': .788, 'all': .75}}]})
    plot_accuracy_table(t2, tmp_path/'table2')
    assert written(tmp_path/'table2')
    assert pd.read_csv(tmp_path/'table2.csv').set_index('lang').loc['de'].tolist() == pytest.approx([68., 78.8])

def test_save_figure_none_writes_nothing(tmp_path):
    import matplotlib.pyplot as plt
    fig = plt.figure(); plt.close(fig)
    assert save_figure(fig, pd.DataFrame({'a': [1]}), None) is fig and not list(tmp_path.iterdir())

@pytest.mark.parametrize('call, msg', [
    (lambda: plot_contributions(pd.concat([tidy(), tidy()])), "rows='variant'"),
    (lambda: plot_contributions(tidy(), rows='variant'), "['variant']"),
    (lambda: plot_correlation(tidy(), 'value', 'nope'), "['nope']"),
    (lambda: plot_specialization_curves(tidy()), "['model', 'epoch']"),
])
def test_clear_errors(call, msg):
    with pytest.raises(ValueError) as e: call()
    assert msg in str(e.value), str(e.value)

def test_correlation_of_two_points_is_na_not_an_error():
    fig = plot_correlation(tidy().iloc[:2], 'value', 'lo')                 # a two-language study's Fig. 8 (issue 20)
    assert 'Pearson r = n/a' in fig.axes[0].get_title() and 'needs at least 3 points' in fig.axes[0].get_title()
