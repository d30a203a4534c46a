"Issue 20, the study's part: a clone's folder above the package, the processes in the fine-tuning key, the CPU kernels pinned, Ctrl-C, a full disk, Study.load given OUT, --focus outside --langs, train/test overlap: each one clear line."
import errno, os, subprocess, sys
from types import SimpleNamespace
import pytest, torch
from conftest import ROOT
from test_study import args, kw
from modtrace.cli import COMMANDS, main
from modtrace.config import OptionError, StudyConfig
from modtrace.run import RunError, RunFolder
from modtrace.stages import finetune_stage, prepare
from modtrace.study import Study

def test_modtrace_works_from_the_folder_above_a_clone(tmp_path):
    "A clone's folder named modtrace beside the working directory shadows the installed package as a namespace package."
    (tmp_path/'modtrace').mkdir()
    code = ("import modtrace.report as r, modtrace.run as R; print(r.analysis_template().name); print(R.code_hash(R.fingerprint).split('+')[0]); "
            "from modtrace.cli import main; main(['study', '--help'])")
    p = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[:2] == ['study.ipynb', R_version()] and '--top-m' in p.stdout

def R_version():
    from modtrace.run import package_version
    return package_version()

def test_several_processes_key_fine_tuning_apart(tiny_folder, shared_data, tmp_path):
    "Data-parallel fine-tuning sums other batches: a 2-process run never reuses a 1-process run's stages (nor the other way)."
    c = StudyConfig.make(**{k: v for k, v in kw(tiny_folder, shared_data, tmp_path).items() if k != 'log'})
    two = SimpleNamespace(num_processes=2, process_index=0, is_main_process=True, device=torch.device('cpu'), wait_for_everyone=lambda: None)
    one, launched = prepare(c, log=lambda *a: None), prepare(c, log=lambda *a: None, ps=two)
    assert (one.hp['processes'], launched.hp['processes']) == (1, 2)
    run = RunFolder(tmp_path/'run')
    assert run.folder(finetune_stage(one, 'full')) != run.folder(finetune_stage(launched, 'full'))

def test_pinned_cpu_kernels_are_used_and_recorded(tmp_path):
    "--cpu-kernels avx2: the command starts itself again with torch's, oneDNN's and MKL's kernels pinned; from Python it is refused without them."
    code = ("import sys; from modtrace import cli; cli.COMMANDS['study'] = (lambda **a: print(__import__('torch').backends.cpu.get_cpu_capability(), a['cpu_kernels']),"
            " *cli.COMMANDS['study'][1:]); cli.main(sys.argv[1:])")
    env = {k: v for k, v in os.environ.items() if k not in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS')}
    p = subprocess.run([sys.executable, '-c', code, 'study', '--cpu-kernels', 'default'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    # (the command started `python -m modtrace` again: the stand-in above is gone there, so the real study ran its checks)
    with pytest.raises(OptionError, match='started without the pins'):
        from modtrace.study import run_study
        run_study(cpu_kernels='default', out=str(tmp_path), report=False)

def test_ctrl_c_says_it_stopped_and_that_a_rerun_resumes(monkeypatch, capsys):
    def interrupted(**a): raise KeyboardInterrupt
    monkeypatch.setitem(COMMANDS, 'study', (interrupted, *COMMANDS['study'][1:]))
    with pytest.raises(SystemExit) as e: main(['study'])
    assert e.value.code == 130 and 'stopped (Ctrl-C)' in capsys.readouterr().err

def test_a_full_disk_is_one_line(monkeypatch, tmp_path, tiny_model):
    "A sketch store reserves its file's blocks when it is made: a full disk is an error there (not a bus error later), said in one line."
    from modtrace.store import build_store
    from datasets import Dataset
    def full(fd, offset, length): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'posix_fallocate', full)
    ds = Dataset.from_dict({'id': ['a', 'b'], 'lang': ['x', 'y'], 'label': [0, 1], 'input_ids': [[0, 5, 2], [0, 6, 7, 2]]})
    with pytest.raises(OSError) as e: build_store(tiny_model(), ds, tmp_path/'store', checkpoint='epoch-1', d=16, progress=False)
    assert e.value.errno == errno.ENOSPC and 'sketches.npy' in str(e.value)
    def fails(**a): raise e.value
    monkeypatch.setitem(COMMANDS, 'study', (fails, *COMMANDS['study'][1:]))
    with pytest.raises(SystemExit, match='the disk is full .*run the same command again'): main(['study'])

def test_study_load_given_the_runs_folder_names_the_study(tmp_path):
    (tmp_path/'pawsx').mkdir(); (tmp_path/'pawsx'/'study.json').write_text('{}')
    with pytest.raises(RunError, match=r"is where runs go \(--out\).*pawsx"): Study.load(tmp_path)

def test_focus_outside_the_studied_languages_says_so(tiny_folder, shared_data, tmp_path):
    with pytest.raises(SystemExit) as e: main(args(tiny_folder, shared_data, tmp_path) + ['--langs', 'en', 'de', '--focus', 'es'])
    assert "--focus names language(s) ['es'] that are not among the study's languages ['en', 'de']: add them to --langs" in str(e.value)

def test_test_examples_in_train_are_counted_and_refused(tiny_folder, shared_data, tmp_path, monkeypatch):
    import modtrace.stages as S
    real = S.study_splits
    def leaky(*a, **k):
        s = real(*a, **k)
        return {**s, 'test': s['train'].select(range(10))}                # 10 test examples that are training examples
    monkeypatch.setattr(S, 'study_splits', leaky)
    c = StudyConfig.make(**{k: v for k, v in kw(tiny_folder, shared_data, tmp_path).items() if k != 'log'})
    with pytest.raises(OptionError) as e: prepare(c, log=lambda *a: None)
    assert e.value.option == 'allow_overlap' and '10 of 10 test examples' in str(e.value) and '--allow-overlap' in e.value.cli()
    lines = []
    prepare(StudyConfig.make(**{**{k: v for k, v in kw(tiny_folder, shared_data, tmp_path).items() if k != 'log'}, 'allow_overlap': True}), log=lines.append)
    assert any(l.startswith('warning: 10 of 10 test examples') for l in lines)

def test_time_is_estimated_before_the_work_and_measured_after(tiny_folder, shared_data, tmp_path):
    from modtrace.study import run_study
    lines = []
    run_study(**{**kw(tiny_folder, shared_data, tmp_path), 'log': lines.append})
    est = next(i for i, l in enumerate(lines) if 'time (estimated' in l)
    assert est < next(i for i, l in enumerate(lines) if 'fine-tuning done' in l)       # before any work
    assert all(f'{k} ~' in lines[est] for k in ('fine-tuning', 'pruning', 'sketching', 'scoring')), lines[est]
    measured = [l for l in lines if 'time (measured' in l]
    assert measured and all(f'{k} ' in measured[0] for k in ('full', 'prune', 'sketch', 'influence', 'results')), measured

def test_a_two_language_study_finishes_with_every_result(tiny_folder, shared_data, tmp_path):
    "--langs en de: every stage runs and every result is written, n/a where a statistic needs three languages."
    import pandas as pd
    from modtrace.study import run_study
    st = run_study(**{**kw(tiny_folder, shared_data, tmp_path), 'langs': ['en', 'de']})
    figs = st.run/'figures'
    assert list(st.masks) == ['en', 'de'] and list(pd.read_csv(figs/'table2_accuracy.csv').lang) == ['en', 'de', 'all']
    for name in ('fig10_full_positive', 'fig2_subnetworks_delta_positive', 'fig8_similarity_vs_influence', 'fig9_layer_correlation'):
        assert (figs/f'{name}.csv').exists(), name
    stats = pd.read_csv(figs/'fig8_similarity_vs_influence.stats.csv')
    assert stats['pearson_r'].isna().all() and stats['note'].str.contains('3').all(), stats
