"""The linear datamodeling score of the demo study's attributions (issue 21), measured by retraining.
Reads a finished demo run (its full fine-tuning's sketch stores), retrains M halves of the training set from the same
start with the study's settings, and prints the LDS of TracIn (cosine, the paper's), the plain gradient dot product,
and two controls: random scores, and what the subsets' label balance alone predicts (same label as the test example).
Run:  HF_HUB_OFFLINE=1 .venv/bin/python nbs/benchmarks/lds_demo.py RUN_FOLDER [M]     (RUN_FOLDER = OUT/demo)"""
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from modtrace.config import StudyConfig
from modtrace.methods import lds, retrained_outputs, subset_draws
from modtrace.model import load_classifier
from modtrace.stages import prepare
from modtrace.store import SketchStore
torch.set_num_threads(1)

run, M = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 64
rec = json.loads((run/'study.json').read_text())
key = json.loads((run/rec['stages']['influence']['full']/'stage.json').read_text())['key']   # the full model's sketches
stores = {side: sorted((run/key[side]).glob('epoch-*'), key=lambda p: int(p.name.split('-')[1])) for side in ('test', 'train')}
rows = lambda p: SketchStore(p).rows(0, len(SketchStore(p))).double()
unit = lambda x: x / x.norm(dim=1, keepdim=True).clamp_min(1e-20)
tracin = sum(unit(rows(q)) @ unit(rows(t)).T for q, t in zip(stores['test'], stores['train'])).numpy()   # Eq. 2: (test, train)
dot = sum(rows(q) @ rows(t).T for q, t in zip(stores['test'], stores['train'])).numpy()

s = rec['settings']
d = prepare(StudyConfig.make(task=s['task'], scale=s['scale'], seed=s['seed'], out=str(run.parent), report=False, progress=False), log=lambda *a: None)
splits = {'train': d.splits['train'], 'test': d.splits['test']}
assert tracin.shape == (len(splits['test']), len(splits['train'])), (tracin.shape, {k: len(v) for k, v in splits.items()})
S = subset_draws(len(splits['train']), M, alpha=0.5, seed=0)
t0 = time.time()
f = retrained_outputs(lambda: load_classifier(d.path, num_labels=d.spec.num_labels, seed=d.hp['seed']), splits, S,
                      run.parent/f'lds-{run.name}', lr=d.hp['lr'], epochs=d.hp['epochs'], batch_size=d.hp['batch_size'], seed=d.hp['seed'])
took = time.time() - t0
y_test, y_train = np.asarray(splits['test']['label']), np.asarray(splits['train']['label'])
same_label = (y_test[:, None] == y_train[None, :]).astype(float)
rnd = np.random.default_rng(0).normal(size=tracin.shape)
table = pd.DataFrame({name: lds(sc, S, f, n_boot=1000) for name, sc in
                      [('TracIn (cosine)', tracin), ('gradient dot product', dot), ('random scores', rnd), ('label balance alone', same_label)]}).T
print(f"demo: {len(splits['train'])} train / {len(splits['test'])} test examples, M = {M} halves, retraining {took / M:.1f} s each")
print(table.to_string())
halves = [lds(tracin, S[i::4], f[i::4], n_boot=200)['lds'] for i in range(4)]
print("TracIn's LDS on four disjoint blocks of M/4 halves:", ', '.join(f'{x:.2f}' for x in halves))
