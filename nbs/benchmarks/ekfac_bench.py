"""Benchmark of EK-FAC influence (modtrace.ekfac) against TracIn's sketching, side by side in one run (issue 21).
Not a test: timings depend on the machine and its load (the script prints `uptime`).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python nbs/benchmarks/ekfac_bench.py [--model base] [--n 64] [--threads 2]

On a random-init XLM-R (base: 12 layers, 12 heads, hidden 768; demo: 4 layers, hidden 64), N examples of 32
tokens, every linear layer, d = 256 per layer, batch 8, each measurement once on the same examples:
- `tracin sketch`:    `Sketcher(d=256)`: one forward + activation-only backward per batch, the paper's sketch (one checkpoint);
- `ekfac covariance`: the first factor pass (token sums of x xᵀ and δ δᵀ per layer, labels sampled from the model);
- `ekfac eigh`:       the eigendecompositions of every A and S (float64);
- `ekfac lambda`:     the second factor pass (each example's gradient in the eigenbases, squared);
- `ekfac features`:   `EKFACProjector(d=256)`: rotation, whitening by (Λ + λ)^(-1/2) and the sketch, per example.
Ratios are to `tracin sketch` per example. Factors are computed once per fine-tuning run and mask, on the training
set; features, like sketches, once per example (TracIn: once per checkpoint, 3 in the study). Scoring is the same
code for both (dot products of d-per-layer rows), on float32 rows for EK-FAC instead of float16.
"""
import argparse, os, subprocess, time
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
import torch, datasets
datasets.disable_progress_bars()
from datasets import Dataset
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
from modtrace.ekfac import LAMBDA_NUMBERS, EKFACFactors, EKFACProjector, SampledLoss, _Covariances, _Rotation
from modtrace.sketch import Sketcher, iter_sketches

SIZES = {'demo': dict(layers=4, heads=4, hidden=64), 'base': dict(layers=12, heads=12, hidden=768)}
T, B = 32, 8

def make_model(name):
    s = SIZES[name]; torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=1000, hidden_size=s['hidden'], num_hidden_layers=s['layers'], num_attention_heads=s['heads'],
                           intermediate_size=4 * s['hidden'], max_position_embeddings=T + 4, num_labels=3, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, attn_implementation='sdpa')
    return XLMRobertaForSequenceClassification(cfg).eval()

def make_rows(n):
    g = torch.Generator().manual_seed(0)
    ids = [[0] + torch.randint(3, 1000, (T - 2,), generator=g).tolist() + [2] for _ in range(n)]
    return Dataset.from_dict({'id': [str(i) for i in range(n)], 'lang': ['en'] * n, 'label': torch.randint(0, 3, (n,), generator=g).tolist(),
                              'input_ids': ids})

def timed(fn):
    t0 = time.perf_counter(); out = fn(); return time.perf_counter() - t0, out

def run_pass(model, ds, projector, loss_fn=None, batch=B):
    "Each batch's rows, one batch at a time (a generator: a whole pass's rotated gradients would not fit in memory)."
    kw = {} if loss_fn is None else {'loss_fn': loss_fn}
    with Sketcher(model, projector=projector, **kw) as sk:
        for _, S, _, _ in iter_sketches(sk, ds, None, batch, progress=False): yield S

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='base', choices=list(SIZES)); ap.add_argument('--n', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())
    model, ds = make_model(a.model), make_rows(a.n)
    list(run_pass(model, ds.select(range(B)), None))                              # warm-up
    t = {}
    t['tracin sketch'], _ = timed(lambda: list(run_pass(model, ds, None)))
    cov = _Covariances()
    t['ekfac covariance'], _ = timed(lambda: list(run_pass(model, ds, cov, SampledLoss(seed=0))))
    def eig():
        e = lambda M: torch.linalg.eigh(M.double())[1].float()
        return {n: e(M) for n, M in cov.A.items()}, {n: e(M) for n, M in cov.S.items()}
    t['ekfac eigh'], (QA, QS) = timed(eig)
    def lam():
        lin = Sketcher(model).linears
        shapes = [tuple(lin[n].weight.shape) for n in lin]
        acc = {n: torch.zeros(s, dtype=torch.float64) for n, s in zip(lin, shapes)}
        sizes = [m * k for m, k in shapes]
        for S in run_pass(model, ds, _Rotation(QA, QS), SampledLoss(seed=0), max(1, min(B, LAMBDA_NUMBERS // sum(sizes)))):
            for n, part in zip(lin, S.split(sizes, 1)): acc[n] += part.square().sum(0).view(acc[n].shape).double()
        return {n: (v / len(ds)).float() for n, v in acc.items()}
    t['ekfac lambda'], L = timed(lam)
    f = EKFACFactors(QA, QS, L, {n: 0.1 * float(v.double().mean()) for n, v in L.items()})
    t['ekfac features'], _ = timed(lambda: list(run_pass(model, ds, EKFACProjector(f, d=256, seed=0))))
    n_params = sum(l.weight.numel() for l in Sketcher(model).linears.values())
    print(f"{a.model}: {n_params / 1e6:.1f}M weights in {len(Sketcher(model).linears)} linear layers, N = {a.n} examples of {T} tokens, "
          f"batch {B}, {a.threads} threads")
    base = t['tracin sketch'] / a.n
    for k, v in t.items():
        per = '' if k == 'ekfac eigh' else f"  {1e3 * v / a.n:8.1f} ms/example  {v / a.n / base:5.2f}x TracIn's sketch"
        print(f"  {k:17s} {v:8.2f} s{per}")
    fac = t['ekfac covariance'] + t['ekfac lambda']
    print(f"  factors' two passes per training example: {fac / a.n / base:.2f}x a TracIn sketch; eigh once per factor set: {t['ekfac eigh']:.1f} s")
    print(f"  the study's features per example, EK-FAC (factors on the training set + features) vs TracIn at 3 checkpoints: "
          f"{(fac + t['ekfac features']) / (3 * t['tracin sketch']):.2f}x (training set), "
          f"{t['ekfac features'] / (3 * t['tracin sketch']):.2f}x (test set)")

if __name__ == '__main__': main()
