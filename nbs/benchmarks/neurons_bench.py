"""Benchmark (issue 19): neurons against heads on the same model, measured side by side in one run (ratios, not seconds).
  1. the neuron importance pass / a plain forward + backward with weight gradients (goal <= 1)
  2. one pruning round of neurons / one of heads (importance + the metric under the new mask; goal <= 2)
  3. sketching under a neuron mask / under a head mask (goal <= 1.1)
Run: HF_HUB_OFFLINE=1 .venv/bin/python nbs/benchmarks/neurons_bench.py"""
import os, time
import torch
from datasets import Dataset
from modtrace.batching import example_loader
from modtrace.model import toy_classifier
from modtrace.sketch import Sketcher, iter_sketches
from modtrace.subnetworks import accuracy_metric, importance
from modtrace.units import HEADS, NEURONS, Masks
torch.set_num_threads(int(os.environ.get('BENCH_THREADS', 1)))

def data(n, T, vocab=1000):
    g = torch.Generator().manual_seed(0)
    ids = [[0] + torch.randint(5, vocab, (T - 2,), generator=g).tolist() + [2] for _ in range(n)]
    return Dataset.from_dict({'id': [str(i) for i in range(n)], 'lang': ['en'] * n, 'input_ids': ids,
                              'attention_mask': [[1] * T for _ in ids], 'label': [i % 2 for i in range(n)]})

def plain(model, ds, bs):
    for b in example_loader(ds, model.config.pad_token_id, bs):
        lab = b.pop('labels'); b.pop('lang_id', None)
        torch.nn.functional.cross_entropy(model(**b).logits, lab, reduction='sum').backward()
    model.zero_grad(set_to_none=True)

def one_round(model, ds, unit, bs):
    "What a pruning round costs: importance under the current mask, then the metric under the next one."
    xi = torch.ones(unit.shape(model))
    s = importance(model, ds, xi, batch_size=bs, unit=unit)
    new = xi.flatten().clone(); new[s.flatten().argsort()[:unit.per_round(xi.shape, unit.fraction, xi.numel())]] = 0
    accuracy_metric(model, ds, new.reshape(xi.shape), unit=unit)

def sketch(model, ds, masks, bs):
    with Sketcher(model, d=256) as sk:
        for _ in iter_sketches(sk, ds, masks, bs, progress=False): pass

def timed(f, reps=3):
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
    return best

for name, (L, H, D), n, bs, T in [('demo-sized 4x4 h64', (4, 4, 64), 64, 16, 32), ('base-sized 12x12 h768', (12, 12, 768), 32, 16, 32)]:
    model, ds = toy_classifier(layers=L, heads=H, hidden=D, vocab=1000, max_positions=T + 2, attn='sdpa', intermediate_size=4 * D), data(n, T)
    g = torch.Generator().manual_seed(0)
    heads = Masks({'en': (torch.rand(HEADS.shape(model), generator=g) > 0.3).float()}, HEADS.shape(model))
    neurons = Masks({'en': (torch.rand(NEURONS.shape(model), generator=g) > 0.3).float()}, NEURONS.shape(model), NEURONS)
    small = ds.select(range(bs))
    plain(model, small, bs); importance(model, small, batch_size=bs, unit=NEURONS); sketch(model, small, heads, bs)   # warm-up
    t_full, t_imp = timed(lambda: plain(model, ds, bs)), timed(lambda: importance(model, ds, batch_size=bs, unit=NEURONS))
    t_rn, t_rh = timed(lambda: one_round(model, ds, NEURONS, bs)), timed(lambda: one_round(model, ds, HEADS, bs))
    t_sn, t_sh = timed(lambda: sketch(model, ds, neurons, bs)), timed(lambda: sketch(model, ds, heads, bs))
    print(f"{name} ({NEURONS.shape(model)[1]} neurons/layer, {n} x {T} tokens, threads {torch.get_num_threads()}): "
          f"neuron importance / forward+backward {t_imp / t_full:.2f} (goal <= 1) | "
          f"pruning round neurons / heads {t_rn / t_rh:.2f} (goal <= 2) | "
          f"sketch under neuron mask / head mask {t_sn / t_sh:.2f} (goal <= 1.1)", flush=True)
