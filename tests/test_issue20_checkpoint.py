"Issue 20: the epoch checkpoint under several processes. Only the main process writes the model and renames `.epoch-N.tmp`; the others wait for it, so a slow process never writes into (or lists) a folder that was already renamed."
import os, subprocess, sys, threading, time
from pathlib import Path
import pytest, torch
import transformers.modeling_utils as mu
from conftest import ROOT
from modtrace.model import toy_classifier
from modtrace.finetune import _save_checkpoint, checkpoint_dir, complete_epochs

class FakeProcess:
    "One of two processes, run in a thread: what `_save_checkpoint` uses of accelerate's `Accelerator`, writing files as accelerate 1.x does."
    def __init__(self, index, barrier, slow=0.):
        self.process_index, self.num_processes, self.barrier, self.slow = index, 2, barrier, slow
    @property
    def is_main_process(self): return self.process_index == 0
    def wait_for_everyone(self): self.barrier.wait()
    def save_state(self, d):
        time.sleep(self.slow)                                        # a process that is late to write its part
        os.makedirs(d, exist_ok=True)                                # accelerate: every process makes the folder ...
        if self.is_main_process: torch.save({}, Path(d)/'optimizer.bin')
        torch.save({}, Path(d)/f'random_states_{self.process_index}.pkl')   # ... and writes its own RNG state
    def unwrap_model(self, m): return m
    def get_state_dict(self, m, unwrap=True): return m.state_dict()
    def save(self, obj, f, safe_serialization=False):
        if self.is_main_process: torch.save(obj, f)

def two_processes(fn, slow=0.5):
    "Run fn(accelerator) in two threads as ranks 0 and 1 (rank 1 late); the errors each raised."
    barrier, errors = threading.Barrier(2, timeout=60), {}
    def run(i):
        try: fn(FakeProcess(i, barrier, slow if i else 0.))
        except BaseException as e: errors[i] = e; barrier.abort()
    ts = [threading.Thread(target=run, args=(i,), name=f'rank{i}') for i in (0, 1)]
    for t in ts: t.start()
    for t in ts: t.join()
    return errors

@pytest.mark.parametrize('late_in', ['save_state', 'save_pretrained'])
def test_a_late_process_never_writes_into_a_renamed_checkpoint(tmp_path, monkeypatch, late_in):
    split = mu.split_torch_state_dict_into_shards
    def late_split(*a, **kw):                                        # rank 1 late between save_pretrained's makedirs and listdir
        if threading.current_thread().name == 'rank1' and late_in == 'save_pretrained': time.sleep(0.5)
        return split(*a, **kw)
    monkeypatch.setattr(mu, 'split_torch_state_dict_into_shards', late_split)
    m = toy_classifier()
    def save(acc):
        for e in (1, 2): _save_checkpoint(acc, m, None, tmp_path, e, {'epoch': e})
    errors = two_processes(save, slow=0.5 if late_in == 'save_state' else 0.)
    assert not errors, {i: f'{type(e).__name__}: {e}' for i, e in errors.items()}
    assert complete_epochs(tmp_path) == [1, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []           # no temporary folder left or made again
    assert sorted(p.name for p in (checkpoint_dir(tmp_path, 2)/'resume').iterdir()) == ['optimizer.bin', 'random_states_0.pkl',
                                                                                       'random_states_1.pkl']

SCRIPT = '''
import sys, time, torch, transformers.modeling_utils as mu
from accelerate import PartialState
from datasets import Dataset
from modtrace.model import toy_classifier
from modtrace.finetune import finetune
st = PartialState(cpu=True)                          # on the CPU, as `modtrace.study.processes` does: gloo between the processes
assert st.num_processes == 2, st
rank, split = st.process_index, mu.split_torch_state_dict_into_shards
def late(f):
    def g(*a, **kw):
        if rank: time.sleep(0.5)                     # rank 1 late between save_pretrained's makedirs and listdir
        return f(*a, **kw)
    return g
mu.split_torch_state_dict_into_shards = late(split)
def rows(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (2 * n, 8), generator=g)
    return Dataset.from_dict({'input_ids': ids.tolist(), 'attention_mask': [[1] * 8] * (2 * n), 'label': (ids[:, 0] % 2).tolist(),
                              'lang': ['xx'] * n + ['yy'] * n, 'id': [str(i % n) for i in range(2 * n)]})
res = finetune(toy_classifier(seed=0), None, {'train': rows(16, 0), 'dev': rows(4, 1), 'test': rows(4, 2)}, sys.argv[1],
               lr=1e-3, epochs=2, batch_size=4, progress=False)
print('epochs', len(res.results['epochs']))
'''

def test_two_processes_with_a_late_rank_finish_fine_tuning(tmp_path):
    (tmp_path/'ft.py').write_text(SCRIPT)
    cmd = [str(Path(sys.executable).parent/'accelerate'), 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
           '--mixed_precision', 'no', '--dynamo_backend', 'no', str(tmp_path/'ft.py'), str(tmp_path/'run')]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'ACCELERATE_USE_CPU': 'true', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, "\n".join(l for l in r.stderr.splitlines() if "rank" in l or "Error" in l)[-4000:]
    run = tmp_path/'run'
    assert complete_epochs(run) == [1, 2] and (run/'DONE').exists()
    assert [p.name for p in run.iterdir() if p.name.startswith('.')] == []
