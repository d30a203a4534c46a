"""The demo's planted-truth check for several seeds: demo model, full fine-tuning, sketches of the full model, Spearman vs R,
summed over the TracIn checkpoints (the task's, or EPOCHS) and for each checkpoint alone; also every other subset of them
named in SUBSETS (e.g. 2,4,6,8,10:6,8,10 sketches those five and also reports the sum over 6, 8, 10).

    MODTRACE_CACHE=... python nbs/benchmarks/demo_seeds.py OUT 0,1,2 [THREADS [EPOCHS[:SUBSET...]]]   # one JSON line per seed
"""
import sys, time, json, torch
from pathlib import Path
from transformers import logging; logging.set_verbosity_error()
import datasets; datasets.disable_progress_bars()
from modtrace.study import finetune_stage, sketch_stage, influence_stage, prepare, check_options, _defaults
from modtrace.run import RunFolder
from modtrace.aggregate import relatedness_agreement
from types import SimpleNamespace
out = Path(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(',')]; threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
sets = [[int(e) for e in x.split(',')] for x in sys.argv[4].split(':')] if len(sys.argv) > 4 else [None]
torch.set_num_threads(threads)
for seed in seeds:
    t0 = time.time()
    o = check_options(SimpleNamespace(**{**_defaults(), 'seed': seed, 'tracin_epochs': sets[0], 'progress': False, 'report': False, 'task_table': None}))
    run = RunFolder(out/f'demo-s{seed}')
    d = prepare(o, log=lambda *a: None)
    full = finetune_stage(run, d, 'full', progress=False, log=lambda *a: None)
    tr = sketch_stage(run, full, d.arch, d.splits['train'], None, d.tracin_epochs, False, log=lambda *a: None)
    te = sketch_stage(run, full, d.arch, d.splits['test'], None, d.tracin_epochs, False, log=lambda *a: None)
    shares, _ = influence_stage(run, te, tr, 100, 'cos')
    s = shares[(shares.epoch == 'sum') & (shares.which == 'pos')]
    pairs, st = relatedness_agreement(s, d.spec.relatedness(seed).loc[d.langs, d.langs], n_boot=200, seed=0)
    per = {}
    for e in sorted(set(shares.epoch) - {'sum'}, key=int):
        se = shares[(shares.epoch == e) & (shares.which == 'pos')]
        per[e] = round(float(relatedness_agreement(se, d.spec.relatedness(seed).loc[d.langs, d.langs], n_boot=10, seed=0)[1]['spearman_rho']), 3)
    from modtrace.influence import influence
    from modtrace.aggregate import example_shares
    def rho_of(idx):
        inf = influence([te[i] for i in idx], [tr[i] for i in idx], m=100, progress=False)
        s2 = example_shares(inf, 'pos'); s2['correct'] = te[-1].meta['correct'].to_numpy()
        return round(float(relatedness_agreement(s2, d.spec.relatedness(seed).loc[d.langs, d.langs], n_boot=10, seed=0)[1]['spearman_rho']), 3)
    epochs = [t.header['checkpoint'].get('epoch') for t in te]
    for sub in sets[1:]: per[','.join(map(str, sub))] = rho_of([epochs.index(e) for e in sub])
    acc = full.accuracy('test')['all']
    print(json.dumps({'seed': seed, 'threads': threads, 'test_acc': round(acc, 4), 'spearman': round(float(st['spearman_rho']), 3),
                      'lo': round(float(st['spearman_lo']), 3), 'per_ckpt': per, 'seconds': round(time.time() - t0)}), flush=True)
