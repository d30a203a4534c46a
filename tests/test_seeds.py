"`modtrace seeds`: every option checked before any study starts, one study per seed in its own run folder, and each conclusion per seed read back from the studies themselves."
import pandas as pd, pytest
from modtrace.seeds import run_seeds, seed_table, spread
from modtrace.config import OptionError
from modtrace.study import Study
from modtrace.cli import main

def small(shared_data):
    "A small XNLI study (three languages of the real samples, a small local XLM-R, one epoch)."
    return dict(task='xnli', data=str(shared_data/'xnli'), train_file='train_from_dev', langs=['en', 'de', 'ru'], model='local:xlmr',
                scale=0.01, epochs=1, batch_size=8, top_m=5, n_boot=20, report=False, progress=False)

@pytest.mark.parametrize('seeds, says', [([3], 'at least two different seeds'), ([2, 2], 'at least two different seeds'),
                                         ([0, -1], 'integers >= 0'), ([0, 1.5], 'integers >= 0')])
def test_bad_seeds_are_one_error_before_any_work(tmp_path, seeds, says):
    with pytest.raises(OptionError, match=says): run_seeds(seeds, out=tmp_path/'runs')
    assert not (tmp_path/'runs').exists()

def test_a_bad_study_option_is_refused_before_the_first_seed(tmp_path, shared_data):
    with pytest.raises(OptionError, match='top_m must be an integer >= 1'): run_seeds([0, 1], out=tmp_path, **{**small(shared_data), 'top_m': 0})
    with pytest.raises(OptionError, match='langs needs at least 2'): run_seeds([0, 1], out=tmp_path, **{**small(shared_data), 'langs': ['en']})
    with pytest.raises(TypeError, match='seed'): run_seeds([0, 1], out=tmp_path, seed=4)
    cfg = tmp_path/'study.toml'; cfg.write_text('seed = 3\n')
    with pytest.raises(OptionError, match='sets a seed'): run_seeds([0, 1], out=tmp_path, config=str(cfg))
    cfg.write_text('top_m = 0\n')                                        # a study file's options are checked as well
    with pytest.raises(OptionError, match='top_m must be an integer >= 1'): run_seeds([0, 1], out=tmp_path, config=str(cfg))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['study.toml']

def test_the_command_names_the_option_as_typed(capsys):
    with pytest.raises(SystemExit) as e: main(['seeds', '--seeds', '7'])
    assert str(e.value) == "modtrace: error: --seeds needs at least two different seeds (the point is to compare them), not [7]."
    with pytest.raises(SystemExit) as e: main(['seeds', '--help'])
    assert e.value.code == 0 and '--seeds' in (out := capsys.readouterr().out) and '--top-m' in out and '--seed ' not in out

def test_one_study_per_seed_and_each_conclusion_read_from_it(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    lines = []
    table, over = run_seeds([1, 0], out=tmp_path/'runs', log=lines.append, **small(shared_data))
    assert list(table.index) == [1, 0] and sorted(p.name for p in (tmp_path/'runs').glob('seed-*')) == ['seed-0', 'seed-1']
    for s in (0, 1):
        st = Study.load(tmp_path/'runs'/f'seed-{s}'/'xnli')
        assert st.settings['seed'] == s
        acc = pd.read_csv(st.figures/'table2_accuracy.csv').set_index('lang')
        assert table.at[s, 'full FT %'] == acc.at['all', 'full FT'] and table.at[s, 'SFT %'] == acc.at['all', 'SFT']
        f2 = pd.read_csv(st.figures/'fig2_subnetworks_delta_positive.csv'); f2 = f2[f2.test_lang == f2.train_lang]
        assert table.at[s, 'Fig. 2 Δ>0'] == (f2.lo > 0).sum() and table.at[s, 'Fig. 2 mean Δ'] == pytest.approx(f2.value.mean())
        r7 = pd.read_csv(st.figures/'fig7_specialization_vs_accuracy.stats.csv').pearson_r.iloc[0]
        assert table.at[s, 'Fig. 7 r'] == pytest.approx(r7, nan_ok=True)
    assert table['planted ρ'].isna().all()                              # XNLI plants nothing
    saved = pd.read_csv(tmp_path/'runs'/'xnli-seeds.csv', index_col='seed')
    pd.testing.assert_frame_equal(saved, table, check_names=False, check_dtype=False)
    assert list(over.index) == ['mean', 'sd', 'min', 'max', 'seeds > 0', 'seeds < 0']
    assert over.at['mean', 'full FT %'] == pytest.approx(table['full FT %'].mean())
    assert (tmp_path/'runs'/'xnli-seeds-spread.csv').exists() and any('seed 1 (1 of 2)' in l for l in lines)
    again, _ = run_seeds([0, 1], out=tmp_path/'runs', log=lambda *a: None, **small(shared_data))   # every stage cached
    pd.testing.assert_frame_equal(again.loc[[0, 1]], table.loc[[0, 1]])

def test_spread_counts_signs_and_leaves_undefined_statistics_out():
    t = pd.DataFrame({'Fig. 7 r': [0.2, -0.1, float('nan')], 'Fig. 2 Δ>0': [3, 0, 1]}, index=pd.Index([0, 1, 2], name='seed'))
    s = spread(t)
    assert s.at['mean', 'Fig. 7 r'] == pytest.approx(0.05) and (s.at['seeds > 0', 'Fig. 7 r'], s.at['seeds < 0', 'Fig. 7 r']) == (1, 1)
    assert s.at['seeds > 0', 'Fig. 2 Δ>0'] == 2 and seed_table({}).empty
