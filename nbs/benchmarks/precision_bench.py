"""bfloat16 against float32 sketches on the demo's full model, last TracIn checkpoint: Pearson of the scores, top-100 overlap.

    python nbs/benchmarks/precision_bench.py RUN   # RUN: a finished demo study (runs/demo)
"""
import sys, torch, numpy as np, json
from pathlib import Path
from types import SimpleNamespace
from transformers import logging; logging.set_verbosity_error()
import datasets; datasets.disable_progress_bars()
from modtrace.study import check_options, _defaults, prepare
from modtrace.model import load_checkpoint
from modtrace.sketch import Sketcher, iter_sketches
from modtrace.influence import agreement
torch.set_num_threads(1)
o = check_options(SimpleNamespace(**{**_defaults(), 'task_table': None}))
d = prepare(o, log=lambda *a: None)
run = Path(sys.argv[1]); full = next(run.glob('full-*'))
load_checkpoint(d.arch, full/'epoch-10')
test, train = d.splits['test'].select(range(0, 1000, 5)), d.splits['train']
def sk(p):
    with Sketcher(d.arch, d=256, precision=p) as s:
        return [torch.cat([x[1] for x in iter_sketches(s, ds, None, 64, progress=False)]).double() for ds in (test, train)]
(q32, t32), (q16, t16) = sk('float32'), sk('bfloat16')
cos = lambda q, t: torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(t, dim=1).T
S32, S16 = cos(q32, t32), cos(q16, t16)
r = np.corrcoef(S32.flatten().numpy(), S16.flatten().numpy())[0, 1]
print(json.dumps({'pearson': round(float(r), 5), **{k: round(v, 4) if isinstance(v, float) else v for k, v in agreement(S16, S32, 100).items()}}))
