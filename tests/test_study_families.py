"Issue 10's end-to-end check: XNLI with Russian (train_from_dev) on three of its languages, with a small local model of every family, and a task described in a file giving the preset's results."
import json
import pandas as pd, pytest
from modtrace.study import run_study
from modtrace.cli import main
from modtrace.core import hf_settings
from modtrace.model import FAMILIES

LANGS = ['en', 'de', 'ru']
FAMILY_NAMES = sorted({f.name for f in FAMILIES.values()})

def xnli_args(shared_data, out, family):
    return dict(task='xnli', data=str(shared_data/'xnli'), train_file='train_from_dev', langs=LANGS, model=f'local:{family}',
                out=out, scale=0.01, epochs=1, batch_size=8, top_m=5, n_boot=20, report=False, progress=False, log=lambda *a: None)

@pytest.mark.parametrize('family', FAMILY_NAMES)
def test_xnli_three_languages_with_a_small_model_of_every_family(shared_data, tmp_path, monkeypatch, family):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    st = run_study(**xnli_args(shared_data, tmp_path, family))
    figs = st.run/'figures'
    assert st.settings['langs'] == LANGS and list(st.masks) == LANGS
    f10 = pd.read_csv(figs/'fig10_full_positive.csv')
    assert list(dict.fromkeys(f10.test_lang)) == LANGS and list(dict.fromkeys(f10.train_lang)) == LANGS   # exactly those
    assert list(pd.read_csv(figs/'table2_accuracy.csv').lang) == [*LANGS, 'all']
    for name in ('fig2_subnetworks_delta_positive', 'fig5_sft_positive', 'fig16_specialization_per_checkpoint', 'fig11_head_usage'):
        assert (figs/f'{name}.png').exists() and (figs/f'{name}.csv').exists(), name
    assert json.loads((st.run/'study.json').read_text())['settings']['model'] == f'local:{family}'

def test_no_progress_leaves_stderr_empty(shared_data, tmp_path, monkeypatch, capfd):
    "progress=False from Python: nothing on stderr (the model's pretraining, 🤗's bars and load reports, the workers'), and the caller's 🤗 settings kept."
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    was = hf_settings()
    run_study(**{**xnli_args(shared_data, tmp_path, 'xlmr'), 'model': 'local:xlmr:pretrain_epochs=1'})
    assert capfd.readouterr().err == ''
    assert hf_settings() == was

PAWSX_TOML = '''
name = "pawsx_file"
data = "{data}"
languages = ["en", "fr", "de", "ko", "es"]   # the preset's order: languages come in the task's order
text = ["sentence1", "sentence2"]
label = "label"
labels = [0, 1]
parallel = true
lr = 9e-6
epochs = 5
focus_lang = "de"
'''

def test_a_task_described_in_a_file_gives_the_presets_results(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    (tmp_path/'pawsx.toml').write_text(PAWSX_TOML.format(data=shared_data/'pawsx'))
    common = dict(data=str(shared_data/'pawsx'), langs=['en', 'de', 'ko'], model='local:xlmr', scale=0.01, epochs=1, batch_size=8,
                  top_m=5, n_boot=20, report=False, progress=False, log=lambda *a: None)
    a = run_study(task='pawsx', out=tmp_path/'preset', **common)
    b = run_study(task=str(tmp_path/'pawsx.toml'), out=tmp_path/'file', **common)
    fa, fb = (sorted(p.name for p in s.figures.glob('*.csv')) for s in (a, b))
    assert fa == fb and all((a.figures/f).read_bytes() == (b.figures/f).read_bytes() for f in fa)

def test_a_study_file_reruns_the_study(shared_data, tmp_path, monkeypatch):
    "RUN/study.toml holds what the study ran with: --config with it reuses every stage and gives the same results."
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))
    st = run_study(**xnli_args(shared_data, tmp_path, 'xlmr'))
    before = {p.name: p.read_bytes() for p in st.figures.glob('*.csv')}
    stages = sorted(p.name for p in st.run.iterdir())
    main(['study', '--config', str(st.run/'study.toml'), '--out', str(tmp_path), '--no-report', '--no-progress'])
    assert sorted(p.name for p in st.run.iterdir()) == stages
    assert {p.name: p.read_bytes() for p in st.figures.glob('*.csv')} == before
