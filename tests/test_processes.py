"The study in two processes (accelerate, gloo on the CPU): from the same fine-tuned checkpoints every later stage gives byte-identical results; from scratch every result file is written."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from conftest import ROOT
from test_study import args, kw, results, FIGURES, TABLES
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

def test_two_processes_from_the_same_checkpoints_give_byte_identical_results(one_process, tiny_folder, shared_data, tmp_path):
    run = tmp_path/'pawsx'
    shutil.copytree(one_process, run)
    for p in [*run.glob('sketch-*'), *run.glob('influence-*'), *run.glob('results-*'), *run.glob('prune-*'), run/'figures']: shutil.rmtree(p)
    launch(args(tiny_folder, shared_data, tmp_path))                   # fine-tuning reused; pruning, sketches, influence redone
    got, want = results(run), results(one_process)
    assert sorted(got) == sorted(want) and [k for k in want if got[k] != want[k]] == []
    assert not list(run.rglob('part-*'))                                  # the parts were merged and removed
    assert json.loads((run/'study.json').read_text())['environment']['processes'] == 2

def test_two_processes_from_scratch_write_every_result(tiny_folder, shared_data, tmp_path, one_process):
    launch(args(tiny_folder, shared_data, tmp_path))
    figs = tmp_path/'pawsx'/'figures'
    missing = [f'{n}.{x}' for n in FIGURES for x in ('png', 'svg', 'csv') if not (figs/f'{n}.{x}').exists()]
    assert not missing + [t for t in TABLES if not (figs/f'{t}.csv').exists()]
    acc2 = pd.read_csv(tmp_path/'pawsx'/'accuracy.csv', index_col=0, header=[0, 1])
    acc1 = pd.read_csv(one_process/'accuracy.csv', index_col=0, header=[0, 1])
    assert acc2.shape == acc1.shape                                       # data-parallel fine-tuning: the same table, other arithmetic
