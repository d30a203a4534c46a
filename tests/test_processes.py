"The study in two processes (accelerate, gloo on the CPU): every result file is written, and a 2-process run never reuses 1-process fine-tuning (its key holds the number of processes). Sketching in parts gives the bytes of one process (tests/test_store.py)."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from conftest import ROOT
from test_study import args, kw, FIGURES, TABLES
from modtrace.study import run_study

def launch(argv, n=2, timeout=900):
    "`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes n -m modtrace ...`, as a user would type it."
    cmd = [str(Path(sys.executable).parent/'accelerate'), 'launch', '--multi_gpu', '--num_processes', str(n), '--num_machines', '1',
           '--mixed_precision', 'no', '--dynamo_backend', 'no', '-m', 'modtrace', *argv]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'ACCELERATE_USE_CPU': 'true', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-4000:]
    return r

@pytest.fixture(scope='module')
def one_process(tmp_path_factory, tiny_folder, shared_data):
    out = tmp_path_factory.mktemp('one')
    run_study(**kw(tiny_folder, shared_data, out))
    return out/'pawsx'

def test_two_processes_never_reuse_one_process_fine_tuning(one_process, tiny_folder, shared_data, tmp_path):
    "Data-parallel fine-tuning sums other batches (other weights): a 2-process run pointed at a 1-process run folder trains anew, and says so."
    run = tmp_path/'pawsx'
    shutil.copytree(one_process, run)
    before = json.loads((one_process/'study.json').read_text())['stages']
    launch(args(tiny_folder, shared_data, tmp_path))
    rec = json.loads((run/'study.json').read_text())
    assert all(rec['stages'][k] != before[k] for k in ('full', 'sft', 'rsft')), rec['stages']
    assert json.loads((run/rec['stages']['full']/'stage.json').read_text())['key']['processes'] == 2
    assert rec['environment']['processes'] == 2 and not list(run.rglob('part-*'))   # (the sketch parts were merged and removed)

def test_two_processes_from_scratch_write_every_result(tiny_folder, shared_data, tmp_path, one_process):
    "Every result, with EK-FAC beside TracIn (factors by process 0, features in parts) and the LDS's retrainings shared by the processes."
    launch(args(tiny_folder, shared_data, tmp_path) + ['--method', 'tracin', 'ekfac', '--lds', '2'])
    figs = tmp_path/'pawsx'/'figures'
    missing = [f'{n}.{x}' for n in FIGURES for x in ('png', 'svg', 'csv') if not (figs/f'{n}.{x}').exists()]
    assert not missing + [t for t in TABLES if not (figs/f'{t}.csv').exists()]
    assert (figs/'ekfac'/'fig10_full_positive.csv').exists() and len(pd.read_csv(figs/'lds.csv')) == 4
    assert len(list((tmp_path/'pawsx').glob('retrain-*'))) == 2 and len(list((tmp_path/'pawsx').glob('ekfac-factors-*'))) >= 1
    acc2 = pd.read_csv(tmp_path/'pawsx'/'accuracy.csv', index_col=0, header=[0, 1])
    acc1 = pd.read_csv(one_process/'accuracy.csv', index_col=0, header=[0, 1])
    assert acc2.shape == acc1.shape                                       # data-parallel fine-tuning: the same table, other arithmetic
