"The study command on the real samples with a tiny model: every stage cached by its inputs, every result written, and a run killed with SIGKILL (while sketching, while in SFT) ends with the same results as one never interrupted."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest, torch
from conftest import ROOT
from transformers import AutoModelForSequenceClassification
from modtrace.study import run_study, Study
from modtrace.cli import main
from modtrace.config import StudyConfig
from modtrace.stages import study_masks, prepare
from modtrace.run import fingerprint
from modtrace.units import save_masks, random_mask

LANGS = ['en', 'fr', 'de', 'ko', 'es']
# every result of SPEC section 7, named after the paper's item (Fig. 3's focus language for pawsx is German)
FIGURES = ['fig10_full_positive', 'fig10_full_negative', 'fig2_subnetworks_delta_positive', 'fig2_subnetworks_delta_negative',
           'fig3_de_random_suboptimal_delta_positive', 'fig4_sft_delta_positive', 'fig4_sft_delta_negative',
           'fig5_sft_positive', 'fig5_sft_negative', 'fig6_random_sft_delta_positive', 'fig6_random_sft_delta_negative',
           'fig7_specialization_vs_accuracy', 'fig8_mask_cosine', 'fig8_similarity_vs_influence', 'fig9_mask_cosine_layers',
           'fig9_layer_correlation', 'fig15_overlap_vs_influence', 'fig11_head_usage', 'fig12_shared_heads',
           'fig13_shared_heads_share', 'fig16_specialization_per_checkpoint', 'fig19_composed_delta_positive']
TABLES = ['table1_heads_disabled', 'table2_accuracy']

def args(model, data, out):
    "The CLI arguments of a tiny pawsx study on the real samples (20 training examples per language)."
    return ['study', '--task', 'pawsx', '--model', str(model), '--data', str(data), '--out', str(out), '--scale', '0.01',
            '--epochs', '2', '--batch-size', '8', '--top-m', '10', '--n-boot', '50', '--no-report', '--no-progress']

def kw(model, data, out):
    return dict(task='pawsx', model=str(model), data=str(data), out=out, scale=0.01, epochs=2, batch_size=8, top_m=10,
                n_boot=50, report=False, progress=False, log=lambda *a: None)

def stages(run): return sorted(p.name for p in run.iterdir() if p.is_dir() and p.name not in ('figures', 'notebooks', 'docs'))

def results(run) -> dict:
    "Every CSV the study writes: figures' numbers, tables and the per-variant shares."
    out = {str(f.relative_to(run)): f.read_bytes() for f in sorted((run/'figures').glob('*.csv'))}
    return {**out, 'shares': sorted(f.read_bytes() for f in run.glob('influence-*/shares.csv'))}  # stage names hold the run's path

@pytest.fixture(scope='module')
def reference(tmp_path_factory, tiny_folder, shared_data):
    "One uninterrupted tiny study on the real PAWS-X samples."
    out = tmp_path_factory.mktemp('ref')
    st = run_study(**kw(tiny_folder, shared_data, out))
    return st, out/'pawsx'

def test_study_writes_every_result_on_the_real_samples(reference):
    st, run = reference
    missing = [f'{n}.{x}' for n in FIGURES for x in ('png', 'svg', 'csv') if not (run/'figures'/f'{n}.{x}').exists()]
    missing += [f'{n}.csv' for n in TABLES if not (run/'figures'/f'{n}.csv').exists()]
    assert not missing, f"result files missing: {missing}"
    assert [s.split('-')[0] for s in stages(run)].count('sketch') >= 2 * 9           # train + test stores of the variants
    acc = pd.read_csv(run/'figures'/'table2_accuracy.csv')
    assert list(acc.columns) == ['lang', 'full FT', 'full FT + subnetwork', 'SFT', 'random SFT'] and list(acc.lang) == [*LANGS, 'all']
    f10 = pd.read_csv(run/'figures'/'fig10_full_positive.csv')
    assert {'test_lang', 'train_lang', 'value', 'lo', 'hi', 'n'} <= set(f10.columns)
    sums = f10.groupby('test_lang')['value'].sum()                                  # shares of a top-m set sum to 100%
    assert ((sums - 100).abs() < 1e-6).all(), sums
    assert st.settings['focus'] == 'de' and len(st.settings['suboptimal']) >= 1 and st.settings['tracin_epochs'] == [1, 2]
    shares = pd.concat(pd.read_csv(f) for f in run.glob('influence-*/shares.csv'))
    assert set(shares.epoch.astype(str)) == {'sum', '1', '2'} and set(shares.which) == {'pos', 'neg'}
    check = pd.read_csv(run/'figures'/'estimator_check.csv', dtype={'checkpoint': str})    # sketched against exact influence
    assert list(check.checkpoint) == ['1', '2', 'sum', '2', '2'] and sorted(set(check.d)) == [64, 256, 1024]
    assert check.overlap_pos.between(0, 1).all() and (check.n_test == 20).all()
    assert (run/'figures'/'fig10_groups_positive.png').exists()                          # which layers carry the sharing
    groups = set(pd.read_csv(run/'figures'/'fig10_groups_positive.csv').group)
    assert 'head' in groups and groups <= {'embeddings', 'lower', 'middle', 'upper', 'head'} and len(groups) >= 3, groups  # 2 layers: lower, middle
    health = pd.read_csv(run/'figures'/'model_health.csv')
    assert {'model', 'test_lang', 'accuracy', 'majority', 'top_prediction', 'warning'} <= set(health.columns)

def test_same_inputs_reuse_every_stage_and_new_masks_rerun_only_what_depends_on_them(reference, tiny_folder, shared_data, tmp_path):
    run_study(**kw(tiny_folder, shared_data, tmp_path))                              # its own run: the reference stays as it is
    run = tmp_path/'pawsx'
    first, before = stages(run), results(run)
    assert before == results(reference[1])                                           # the same inputs give the same results
    stamp = {p: p.stat().st_mtime_ns for p in run.glob('*/DONE')} | {p: p.stat().st_mtime_ns for p in run.glob('sketch-*/*/complete.json')}
    run_study(**kw(tiny_folder, shared_data, run.parent))                            # same inputs: nothing recomputed
    assert stages(run) == first and all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    assert results(run) == before
    f = save_masks(tmp_path/'given.json', {l: random_mask(2, 4, 5, seed=i) for i, l in enumerate(LANGS)})
    run_study(**kw(tiny_folder, shared_data, run.parent), masks=str(f))              # new masks: SFT and its sketches again
    now = stages(run)
    new = [s.split('-')[0] for s in now if s not in first]
    assert 'full' not in new and 'prune' not in new and {'sft', 'rsft', 'sketch', 'influence'} <= set(new)
    assert json.loads((run/'masks.json').read_text())['source'] == str(f)

def test_a_model_folder_changed_in_place_keys_new_stages(tiny_folder, shared_data, tmp_path):
    "The same --model folder with other weights (retrained in place): other stage keys, so no stage of the old weights is reused."
    mine = tmp_path/'mine'; shutil.copytree(tiny_folder, mine)
    opts = lambda: StudyConfig.make(**{k: v for k, v in kw(mine, shared_data, tmp_path).items() if k != 'log'})
    keys = lambda: prepare(opts(), log=lambda *a: None).hp
    before = keys()
    m = AutoModelForSequenceClassification.from_pretrained(mine)
    with torch.no_grad(): m.base_model.embeddings.word_embeddings.weight[5, 0] += 1e-3   # one weight of thousands
    m.save_pretrained(mine)
    after = keys()
    assert after['model'] == before['model'] and after['weights'] != before['weights']
    assert {k: v for k, v in after.items() if k != 'weights'} == {k: v for k, v in before.items() if k != 'weights'}
    assert keys() == after                                                             # and the same weights: the same keys

def test_a_task_model_callable_without_progress_still_works(tiny_folder):
    "A task registered with default_model=callable(seed) (before progress was passed) is called without it."
    from types import SimpleNamespace
    from modtrace.stages import _model_path
    spec = SimpleNamespace(default_model=lambda seed=0: f'{tiny_folder}-{seed}')
    assert _model_path(spec, None, 3, progress=False) == f'{tiny_folder}-3'
    spec = SimpleNamespace(default_model=lambda seed=0, progress=True: f'{seed}-{progress}')
    assert _model_path(spec, None, 3, progress=False) == '3-False'

def _kill_when(cmd, out:Path, pattern:str, timeout=600):
    "Start the study, SIGKILL it as soon as a file matching `pattern` appears under `out`; the pattern must appear."
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.time()
    while not list(out.glob(pattern)):
        if p.poll() is not None: pytest.fail(f"the study ended before {pattern} appeared:\n{p.stderr.read().decode()[-3000:]}")
        if time.time() - t > timeout: p.kill(); pytest.fail(f"{pattern} did not appear in {timeout} s")
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL); p.wait()
    return p.returncode

@pytest.mark.parametrize('stage,pattern', [('sketching', 'pawsx/sketch-*/epoch-*/header.json'),
                                           ('SFT', 'pawsx/sft-*/epoch-1/state.json')])
def test_sigkill_then_rerun_gives_identical_results(reference, tiny_folder, shared_data, tmp_path, stage, pattern):
    _, ref = reference
    cmd = [sys.executable, '-c', f"from modtrace.cli import main; main({args(tiny_folder, shared_data, tmp_path)!r})"]
    assert _kill_when(cmd, tmp_path, pattern) == -signal.SIGKILL
    assert not (tmp_path/'pawsx'/'figures'/'fig10_full_positive.csv').exists()     # killed before the end
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got, want = results(tmp_path/'pawsx'), results(ref)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == [], f"results differ after a kill during {stage}"

def test_mask_file_must_cover_every_language(tmp_path):
    f = save_masks(tmp_path/'m.json', {'en': torch.ones(2, 4)})
    with pytest.raises(ValueError, match=r"no mask for language\(s\) \['de'\]"): study_masks(['en', 'de'], (2, 4), f)

def test_fingerprint_is_order_free_and_input_sensitive():
    assert fingerprint(a=1, b=[1, 2]) == fingerprint(b=[1, 2], a=1) != fingerprint(a=1, b=[2, 1])

def test_cli_bad_input_is_one_line(tmp_path, tiny_folder, shared_data):
    with pytest.raises(SystemExit, match=r"modtrace: error: .*Unknown task 'nli'"): main(['study', '--task', 'nli'])
    with pytest.raises(SystemExit, match=r"modtrace: error: --top-m = 500 needs at least 1000 training examples"):
        main(args(tiny_folder, shared_data, tmp_path)[:-6] + ['--top-m', '500', '--no-report', '--no-progress'])

def test_every_figure_compares_what_the_paper_compares():
    "Toy shares: each variant leans on its own language by a distinct amount; every Δ is that variant minus the full model."
    from modtrace.results import study_variants, study_results, ResultInputs
    langs = ['a', 'b', 'c']
    xi = {'a': torch.tensor([[1., 1, 0, 0]]), 'b': torch.tensor([[1., 1, 1, 0]]), 'c': torch.tensor([[0., 1, 1, 1]])}
    vs = study_variants(xi, xi, 'a', ['b', 'c'], [('a', 'b')])
    own = {v.name: 0.2 + i / 50 for i, v in enumerate(vs)}                    # each variant's in-language share
    rows = [{'test_row': i, 'id': str(i), 'lang': l, 'correct': not (v.name == 'sft/a' and i == 0), 'epoch': e, 'which': w,
             'variant': v.name, **{k: own[v.name] if k == l else (1 - own[v.name]) / 2 for k in langs}}
            for v in vs for e in ('sum', '1', '2') for w in ('pos', 'neg') for l in v.test for i in range(4)]
    acc = {k: [{'test': {l: .8 for l in [*langs, 'all']}}] * 2 for k in ('full FT', 'SFT', 'random SFT')}
    r = study_results(ResultInputs(pd.DataFrame(rows), acc, xi, vs, 'a', [('a', 'b')], n_boot=20))
    d = lambda name: r[name][r[name].test_lang == r[name].train_lang].set_index(['variant', 'test_lang'])
    pp = lambda v, base='full': pytest.approx(100 * (own[v] - own[base]))
    for l in langs:
        assert d('fig2_subnetworks_delta_positive').loc[(l, l), 'value'] == pp(f'full/{l}')
        assert d('fig4_sft_delta_negative').loc[(l, l), 'value'] == pp(f'sft/{l}')
        assert d('fig6_random_sft_delta_positive').loc[(l, l), 'value'] == pp(f'rsft/{l}')
    assert d('fig4_sft_delta_positive').loc[('a', 'a'), 'n'] == 3                 # one example the SFT model gets wrong: dropped
    f5 = r['fig5_sft_positive'].set_index(['test_lang', 'train_lang'])['value']
    assert f5['b', 'b'] == pytest.approx(100 * own['sft/b'])
    f3 = d('fig3_a_random_suboptimal_delta_positive')['value']
    assert f3['random seed 1', 'a'] == pp('full/random-1') and f3['mask of c', 'a'] == pp('full/mask-c') and f3['own mask', 'a'] == pp('full/a')
    f19 = d('fig19_composed_delta_positive')['value']
    assert f19['a ∩ b', 'b'] == pp('sft/a&b') and f19['a ∪ b', 'a'] == pp('sft/a|b')
    spec = r['fig16_specialization_per_checkpoint'].set_index(['model', 'epoch', 'test_lang'])['value']
    assert spec['SFT', 2, 'c'] == pytest.approx(100 * own['sft/c']) and spec['random SFT', 1, 'a'] == pytest.approx(100 * own['rsft/a'])
    t2 = r['table2_accuracy'].set_index('lang')
    assert (t2['full FT + subnetwork'] == 100).all() and (t2['SFT'] == 80).all()

def test_a_moved_run_folder_reuses_every_stage(reference, tiny_folder, shared_data, tmp_path):
    "Stages refer to each other by paths inside the run folder: a copy elsewhere recomputes nothing."
    _, ref = reference
    shutil.copytree(ref, tmp_path/'pawsx')
    before = stages(tmp_path/'pawsx')
    st = run_study(**kw(tiny_folder, shared_data, tmp_path))
    assert stages(tmp_path/'pawsx') == before                                    # no new stage folder: everything reused
    assert results(tmp_path/'pawsx') == results(ref)
    assert st.run == tmp_path/'pawsx' and st.stale == {}

def test_the_number_of_sketching_workers_changes_no_result(reference, tiny_folder, shared_data, tmp_path):
    "From the same fine-tuned checkpoints, 1 and 3 local sketching processes give byte-identical results (only the time differs)."
    _, ref = reference
    got = {}
    for n in (1, 3):
        run = tmp_path/str(n)/'pawsx'
        shutil.copytree(ref, run)
        for p in [*run.glob('sketch-*'), *run.glob('influence-*'), *run.glob('results-*'), *run.glob('groups-*'), *run.glob('estimator-*'),
                  *run.glob('rsft-*'), run/'figures']: shutil.rmtree(p)           # (random SFT: beside SFT with workers; the check splits)
        run_study(**{**kw(tiny_folder, shared_data, tmp_path/str(n)), 'workers': n})
        assert json.loads((run/'study.json').read_text())['environment']['workers'] == n
        assert 'workers' not in (run/'study.toml').read_text()              # a rerun from the file chooses for its own machine
        got[n] = results(run), sorted(f.read_bytes() for f in run.glob('rsft-*/epoch-*/model.safetensors'))
    assert got[1] == got[3] == (results(ref), sorted(f.read_bytes() for f in ref.glob('rsft-*/epoch-*/model.safetensors')))
    assert got[1][1]                                                          # (random SFT's checkpoints were compared)

def test_workers_are_for_one_cpu_process():
    "Under accelerate launch (or on a GPU) the launched processes share the sketching: --workers > 1 is refused, the default is 1."
    from types import SimpleNamespace
    from modtrace.config import OptionError
    from modtrace.stages import study_workers
    launched = SimpleNamespace(num_processes=2, device=torch.device('cpu'))
    assert study_workers(None, 1, launched) == 1 and study_workers(4, 1) == 4
    with pytest.raises(OptionError, match='under accelerate launch leave it out'): study_workers(2, 1, launched)

def test_a_finished_study_opens_without_recomputing(reference):
    st, run = reference
    again = Study.load(run)
    assert again.settings == st.settings and list(again.masks) == LANGS
    assert set(again.results) == set(st.results) and again.accuracy.equals(st.accuracy)
    assert set(again.shares.variant) == {v for v in json.loads((run/'study.json').read_text())['stages']['influence']}
    fig = again.plot('fig2_subnetworks_delta_positive')
    assert fig.axes and again.plot('table2_accuracy').equals(again.results['table2_accuracy'])
    with pytest.raises(ValueError, match='holds no finished study'): Study.load(run/'figures')

def test_stages_made_by_other_code_are_said_to_be_stale(reference, tmp_path):
    _, ref = reference
    shutil.copytree(ref, tmp_path/'pawsx')
    rec = json.loads((tmp_path/'pawsx'/'study.json').read_text())
    f = tmp_path/'pawsx'/rec['stages']['sft']/'stage.json'
    marker = json.loads(f.read_text())
    assert Study.load(tmp_path/'pawsx').stale == {}
    assert 'modtrace.finetune.finetune' in marker['functions'] and 'modtrace.data.load_splits' in marker['functions']   # read from the code
    f.write_text(json.dumps({**marker, 'functions': {**marker['functions'], 'modtrace.finetune.finetune': 'older'}}))
    assert Study.load(tmp_path/'pawsx').stale == {rec['stages']['sft']: ['modtrace.finetune.finetune']}   # which stage, and why

def test_a_second_study_on_the_same_folder_stops_with_one_clear_error(reference, tiny_folder, shared_data, tmp_path):
    from modtrace.run import RunFolder
    with RunFolder(tmp_path/'pawsx').lock():
        with pytest.raises(ValueError, match='is in use by another modtrace study'): run_study(**kw(tiny_folder, shared_data, tmp_path))

# ---------------------------------------------------------------- every option checked before any work
def _exit(argv):
    with pytest.raises(SystemExit) as e: main(argv)
    return str(e.value)

@pytest.mark.parametrize('extra,words', [
    (['--epochs', '0'], '--epochs must be an integer >= 1'),               # 0 used to mean "the task's default"
    (['--lr', '0'], '--lr must be > 0'),
    (['--scale', '-1', '--top-m', '1'], '--scale must be > 0'),            # used to exit 0 with half the cells NaN
    (['--batch-size', '0'], '--batch-size must be an integer >= 1'),
    (['--n-boot', '1'], '--n-boot must be an integer >= 2'),
    (['--keep', '0'], '--keep must lie in (0, 1]'),
    (['--tracin-epochs', '0'], '--tracin-epochs must be epoch numbers >= 1'),
    (['--tracin-epochs', '1'], '--tracin-epochs [1] must include the last epoch (2)'),
    (['--masks', 'no-such-masks.json'], '--masks must be \'random\' or a mask file'),
    (['--focus', 'xx'], "--focus names language(s) ['xx']"),
    (['--compose', 'en'], '--compose takes pairs of two different languages'),
    (['--scale', '5'], 'use --scale 0.8 or less'),                         # the samples hold 2,000 training rows per language
    (['--sketch-layers', 'query['], '--sketch-layers must be regular expressions'),
    (['--workers', '0'], '--workers must be an integer >= 1'),
    (['--sketch-layers', 'no_such_layer'], "--sketch-layers: Layer pattern 'no_such_layer' matches no nn.Linear"),
])
def test_every_bad_option_is_one_line_naming_it_before_any_work(tiny_folder, shared_data, tmp_path, extra, words):
    msg = _exit(args(tiny_folder, shared_data, tmp_path) + extra)
    assert msg.startswith('modtrace: error: ') and words in msg and '\n' not in msg, msg
    assert not list((tmp_path/'pawsx').glob('full-*'))                      # nothing trained

def test_a_mask_file_that_does_not_fit_stops_before_fine_tuning(tiny_folder, shared_data, tmp_path):
    wrong = save_masks(tmp_path/'wrong.json', {l: torch.ones(3, 4) for l in LANGS})
    short = save_masks(tmp_path/'short.json', {l: torch.ones(2, 4) for l in LANGS[:2]})
    assert "--masks: " in (m := _exit(args(tiny_folder, shared_data, tmp_path) + ['--masks', str(wrong)])) and '(3, 4)' in m
    assert "no mask for language(s) ['de', 'ko', 'es']" in _exit(args(tiny_folder, shared_data, tmp_path) + ['--masks', str(short)])
    assert not list((tmp_path/'pawsx').glob('full-*'))

def test_errors_name_the_options_of_the_command(tiny_folder, shared_data, tmp_path):
    "XNLI's Russian has no train file: the fix is --train-file (not split_files=...); an unwritable --out is one line."
    msg = _exit(['study', '--task', 'xnli', '--model', str(tiny_folder), '--data', str(shared_data), '--out', str(tmp_path),
                 '--scale', '0.01', '--no-report', '--no-progress'])
    assert "Use --train-file STEM" in msg and 'split_files' not in msg, msg
    (tmp_path/'file').write_text('')
    assert 'Cannot write the run folder' in _exit(args(tiny_folder, shared_data, tmp_path/'file'/'sub'))

def test_sketch_layers_choose_what_every_store_and_check_holds(tiny_folder, shared_data, tmp_path):
    "--sketch-layers: every store of the study (and the estimator check's exact gradients) holds those layers only."
    st = run_study(**{**kw(tiny_folder, shared_data, tmp_path), 'sketch_layers': ['attention', 'classifier']})
    layers = {tuple(json.loads(h.read_text())['layers']) for h in (tmp_path/'pawsx').glob('sketch-*/*/header.json')}
    assert len(layers) == 1 and all(('attention' in n or 'classifier' in n) for n in next(iter(layers))), layers
    assert not any('intermediate' in n for n in next(iter(layers)))                  # the feed-forward layers are left out
    assert st.settings['sketch_layers'] == ['attention', 'classifier']
    assert (tmp_path/'pawsx'/'figures'/'fig10_full_positive.csv').exists() and (tmp_path/'pawsx'/'figures'/'estimator_check.csv').exists()

def test_no_keep_stores_leaves_no_store_and_the_same_results(reference, tiny_folder, shared_data, tmp_path):
    "--no-keep-stores: byte-identical results, no sketch store left; a rerun sketches only the full model's two stores again."
    _, ref_run = reference
    lines = []
    run_study(**{**kw(tiny_folder, shared_data, tmp_path), 'keep_stores': False, 'log': lines.append})
    run = tmp_path/'pawsx'
    assert not list(run.glob('sketch-*')) and results(run) == results(ref_run)
    assert sum('dropped' in x for x in lines) > 2                                  # dropped along the way, not only at the end
    inf, again = sorted(p.name for p in run.glob('influence-*')), []
    run_study(**{**kw(tiny_folder, shared_data, tmp_path), 'keep_stores': False, 'log': again.append})
    assert sorted(p.name for p in run.glob('influence-*')) == inf and not list(run.glob('sketch-*'))
    drops = [x for x in again if 'dropped' in x]
    assert len(drops) == 1 and 'dropped 2 sketch store folder(s)' in drops[0], drops

def test_mask_specificity_is_every_language_under_every_subnetwork(reference):
    "Beyond the paper: the full model's accuracy on each language under each subnetwork; its diagonal is Table 2's."
    st, run = reference
    spec = pd.read_csv(run/'figures'/'mask_specificity.csv')
    assert (run/'figures'/'mask_specificity.png').exists() and len(spec) == len(LANGS) ** 2
    assert list(dict.fromkeys(spec.mask_lang)) == LANGS and list(dict.fromkeys(spec.test_lang)) == LANGS
    own = spec[spec.mask_lang == spec.test_lang].set_index('test_lang')['accuracy']
    t2 = pd.read_csv(run/'figures'/'table2_accuracy.csv').set_index('lang')['full FT + subnetwork']
    pd.testing.assert_series_equal(own, t2.loc[LANGS], check_names=False)      # two code paths, one accuracy
    assert 'specificity' in json.loads((run/'study.json').read_text())['stages']

# ---------------------------------------------------------------- a stage's key holds the code it runs
def edit(monkeypatch, func, old:str, new:str):
    "Edit `func`'s source as a person would (`old` -> `new`) and put the edited function wherever modtrace holds the original."
    import inspect, linecache, textwrap
    src = textwrap.dedent(inspect.getsource(func))
    assert old in src, f"{old!r} is not in {func.__qualname__}'s source"
    edited, fname = src.replace(old, new, 1), f'<edited {func.__module__}.{func.__qualname__}>'
    linecache.cache[fname] = (len(edited), None, edited.splitlines(True), fname)   # the edited source, as inspect reads a file's
    ns = {}
    exec(compile(edited, fname, 'exec'), func.__globals__, ns)
    fn = ns[func.__name__]
    fn.__module__, fn.__qualname__ = func.__module__, func.__qualname__
    for m in [m for n, m in list(sys.modules.items()) if n.startswith('modtrace')]:
        for k, v in list(vars(m).items()):
            if v is func: monkeypatch.setattr(m, k, fn)

def made(run) -> dict:
    "{stage folder: when its marker was written}."
    return {p.parent.name: p.stat().st_mtime_ns for p in run.glob('*/stage.json')}

@pytest.mark.parametrize('where,old,new,recomputed', [
    ('modtrace.tracing.estimator_check', '"The check\'s table', '"The estimator check\'s table', {'estimator', 'results'}),
    ('modtrace.tracing.specificity_stage', "'accuracy': 100 * a", "'accuracy': a * 100", {'specificity', 'results'}),
    ('modtrace.data.load_splits', '"The paper\'s splits:', '"The splits:', 'all'),   # data loading: every stage
])
def test_editing_a_function_a_stage_runs_recomputes_that_stage_and_those_after_it(reference, tiny_folder, shared_data, tmp_path, monkeypatch,
                                                                                where, old, new, recomputed):
    import importlib
    _, ref = reference
    shutil.copytree(ref, tmp_path/'pawsx')
    run, before = tmp_path/'pawsx', made(tmp_path/'pawsx')
    mod, name = where.rsplit('.', 1)
    edit(monkeypatch, getattr(importlib.import_module(mod), name), old, new)
    run_study(**kw(tiny_folder, shared_data, tmp_path))
    rec = json.loads((run/'study.json').read_text())['stages']
    used = {k: v for k, v in rec.items() if isinstance(v, str)} | {f'influence {k}': v for k, v in rec['influence'].items()}
    new_ = {k.split(' ')[0] for k, v in used.items() if v not in before}
    kept = {k for k, v in used.items() if v in before}
    if recomputed == 'all': assert not kept, kept
    else:
        assert new_ == recomputed, new_
        assert all(made(run)[used[k]] == before[used[k]] for k in kept)           # the others: reused, not rewritten
        assert {'full', 'sft', 'rsft', 'prune'} <= kept
    figures = lambda r: {k: v for k, v in results(r).items() if k != 'shares'}
    assert figures(run) == figures(ref)                                          # (edits that change no number)
    shares = lambda r, st: sorted((r/f/'shares.csv').read_bytes() for f in st['influence'].values())
    assert shares(run, rec) == shares(ref, json.loads((ref/'study.json').read_text())['stages'])
