"""Benchmark of TracIn sketching and scoring (modtrace.sketch, modtrace.store, modtrace.influence), side by side
in one run. Not a test: timings depend on the machine and its load (the script prints `uptime`).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python nbs/benchmarks/tracin_bench.py [--models demo base]
        [--batches 2] [--threads 1] [--n-test 2500 --n-train 10000] [--no-score]

Per model (random init, XLM-R architecture; demo: 4 layers, 4 heads, hidden 64; base: 12 layers, 12 heads,
hidden 768; sequences of 32 tokens), on the same batches, per example:
- `train`:   one training step (forward, backward, AdamW step), batch-mean loss;
- `sketch`:  `Sketcher(d=256)` on every linear layer: forward + activation-only backward, hook sketches;
- `loop`:    per-example backward loop (batch of 1), each linear's weight gradient projected to d = 256 by a dense
             Gaussian matrix (same output size as the sketch; for matrices too large to hold, one 256 x 2^18 block
             is reused for every block of columns: the same FLOPs, bounded memory);
- `vmap`:    `torch.func.vmap(grad(...))` per-example gradients of the linear weights, then the same dense projection.
Each measurement runs in its own subprocess; peak memory is that process's max RSS minus its RSS after the model
and batches were built (so it counts what the method itself allocates: gradients, optimizer state, activations).
Scoring: `influence` of n_test x n_train random float16 stores of dimension (every linear of the base model) x 256.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, torch

SIZES = {'demo': dict(layers=4, heads=4, hidden=64, batch=16), 'base': dict(layers=12, heads=12, hidden=768, batch=8)}
T, D, BLOCK = 32, 256, 2 ** 18

def make_model(name, seed=0):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    s = SIZES[name]; torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=1000, hidden_size=s['hidden'], num_hidden_layers=s['layers'],
                           num_attention_heads=s['heads'], intermediate_size=4 * s['hidden'], max_position_embeddings=T + 4,
                           num_labels=2, pad_token_id=1, bos_token_id=0, eos_token_id=2, attn_implementation='sdpa')
    return XLMRobertaForSequenceClassification(cfg).eval()

def make_batches(n, B, seed=0):
    g = torch.Generator().manual_seed(seed); out = []
    for _ in range(n):
        lens = torch.randint(T // 2, T + 1, (B,), generator=g)
        ids = torch.full((B, T), 1); att = torch.zeros(B, T, dtype=torch.long)
        for i, L in enumerate(lens.tolist()):
            ids[i, :L] = torch.randint(3, 1000, (L,), generator=g); ids[i, 0], ids[i, L - 1] = 0, 2; att[i, :L] = 1
        out.append({'input_ids': ids, 'attention_mask': att, 'labels': torch.randint(0, 2, (B,), generator=g)})
    return out

class DenseProjector:
    "Dense Gaussian projection of each layer's flattened weight gradient to D numbers."
    def __init__(self, shapes):
        g = torch.Generator().manual_seed(0)
        self.R = torch.randn(D, min(BLOCK, max(m * n for m, n in shapes)), generator=g) / D ** .5
    def __call__(self, grads):            # list of (m, n) or (B, m, n) -> (B?, layers * D)
        out = []
        for gr in grads:
            f = gr.flatten(-2)
            out.append(sum(f[..., i:i + BLOCK] @ self.R[:, :f.shape[-1] - i if f.shape[-1] - i < BLOCK else BLOCK].T
                           for i in range(0, f.shape[-1], BLOCK)))
        return torch.cat(out, -1)

def run_train(model, batches):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    def step(b):
        loss = torch.nn.functional.cross_entropy(model(input_ids=b['input_ids'], attention_mask=b['attention_mask']).logits, b['labels'])
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return step

def run_sketch(model, batches):
    from modtrace.sketch import Sketcher
    sk = Sketcher(model, d=D).__enter__()
    return lambda b: sk(b)

def run_loop(model, batches):
    from modtrace.sketch import select_linears
    W = [l.weight for l in select_linears(model).values()]
    proj = DenseProjector([w.shape for w in W])
    def step(b):
        out = []
        for i in range(len(b['labels'])):
            keep = b['attention_mask'][i].bool()
            loss = torch.nn.functional.cross_entropy(model(input_ids=b['input_ids'][i][keep][None]).logits, b['labels'][i:i + 1])
            out.append(proj(torch.autograd.grad(loss, W)))
        return torch.stack(out)
    return step

def run_vmap(model, batches):
    from torch.func import functional_call, grad, vmap
    from modtrace.sketch import select_linears
    model.set_attn_implementation('eager')      # sdpa's mask shortcut is data-dependent control flow (not vmappable)
    names = [n + '.weight' for n in select_linears(model)]
    params = dict(model.named_parameters())
    W = {n: params[n].detach() for n in names}
    rest = {n: p.detach() for n, p in params.items() if n not in W}
    proj = DenseProjector([w.shape for w in W.values()])
    def loss_fn(w, ids, att, y):
        bias = ((1. - att.float()) * torch.finfo(torch.float32).min)[None, None, None]   # (1, 1, 1, T): a 4D mask avoids a data-dependent shortcut
        logits = functional_call(model, ({**rest, **w},), kwargs={'input_ids': ids[None], 'attention_mask': bias}).logits
        return torch.nn.functional.cross_entropy(logits, y[None])
    per_ex = vmap(grad(loss_fn), in_dims=(None, 0, 0, 0))
    def step(b):
        g = per_ex(W, b['input_ids'], b['attention_mask'], b['labels'])       # {name: (B, m, n)}
        return proj([g[n] for n in names])
    return step

RUNNERS = {'train': run_train, 'sketch': run_sketch, 'loop': run_loop, 'vmap': run_vmap}

def rss_mb(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
def maxrss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def one(name, method, n_batches, threads):
    "Time one method on one model (this process only): seconds per example and peak extra memory."
    torch.set_num_threads(threads)
    import modtrace.sketch; from torch import func as _   # imports before the baseline: they are not the method's memory
    model = make_model(name); batches = make_batches(n_batches + 1, SIZES[name]['batch'])
    base = rss_mb()
    step = RUNNERS[method](model, batches)
    step(batches[0])                                                                # warm-up
    t0 = time.perf_counter()
    for b in batches[1:]: step(b)
    dt = time.perf_counter() - t0
    n = n_batches * SIZES[name]['batch']
    return {'model': name, 'method': method, 's_per_example': dt / n, 'peak_extra_mb': maxrss_mb() - base,
            'params_M': sum(p.numel() for p in model.parameters()) / 1e6}

def fake_store(path, n, dim, ck, seed):
    "A complete float16 store of random sketches (written with the store's own layout)."
    from modtrace.store import _open_array, _crc, _write_json
    from pathlib import Path
    path = Path(path); path.mkdir(parents=True)
    h = {'format': 1, 'model': 'bench', 'checkpoint': {'name': ck}, 'mask': None, 'layers': ['all'], 'sizes': [dim], 'd': D,
         'seed': 0, 'exact': False, 'dtype': 'float16', 'n': n, 'dim': dim, 'ids': [str(i) for i in range(n)]}
    arr = _open_array(path, h, 'w+'); rng = np.random.default_rng(seed); chunks = []
    for s in range(0, n, 1000):
        e = min(s + 1000, n); arr[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32); chunks.append([s, e, _crc(arr[s:e])])
    arr.flush(); del arr
    _write_json(path/'header.json', h)
    _write_json(path/'meta.json', {'id': h['ids'], 'lang': ['xx'] * n, 'label': [0] * n, 'pred': [0] * n, 'loss': [0.] * n, 'correct': [True] * n})
    _write_json(path/'complete.json', {'n': n, 'chunks': chunks})
    return path

def score(n_test, n_train, threads):
    from modtrace.store import SketchStore
    from modtrace.influence import influence
    from modtrace.sketch import select_linears
    torch.set_num_threads(threads)
    dim = len(select_linears(make_model('base'))) * D
    with tempfile.TemporaryDirectory() as tmp:
        te, tr = fake_store(f'{tmp}/te', n_test, dim, 'e1', 0), fake_store(f'{tmp}/tr', n_train, dim, 'e1', 1)
        t0 = time.perf_counter()
        inf = influence(SketchStore(te), SketchStore(tr), m=100, chunk_size=2048, progress=False)
        dt = time.perf_counter() - t0
    return {'n_test': n_test, 'n_train': n_train, 'dim': dim, 'seconds': dt, 'threads': threads, 'top_shape': list(inf.top_idx.shape)}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', nargs='+', default=['demo', 'base'])
    ap.add_argument('--methods', nargs='+', default=['train', 'sketch', 'loop', 'vmap'])
    ap.add_argument('--batches', type=int, default=2)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--n-test', type=int, default=2500); ap.add_argument('--n-train', type=int, default=10000)
    ap.add_argument('--score-threads', type=int, default=2)
    ap.add_argument('--no-score', action='store_true')
    ap.add_argument('--one', nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one: print(json.dumps(one(*a.one, a.batches, a.threads))); return
    print(subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip(), flush=True)
    res = {}
    for name in a.models:
        for meth in a.methods:
            p = subprocess.run([sys.executable, __file__, '--one', name, meth, '--batches', str(a.batches), '--threads', str(a.threads)],
                               capture_output=True, text=True)
            if p.returncode: print(f'{name} {meth} failed:\n{p.stderr[-2000:]}', flush=True); continue
            r = res[name, meth] = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{name:5s} {meth:7s} {r['s_per_example'] * 1e3:9.2f} ms/example  peak +{r['peak_extra_mb']:8.0f} MB", flush=True)
        if (name, 'sketch') in res:
            s = res[name, 'sketch']
            for meth, goal in [('train', 'goal <= 0.6'), ('loop', 'goal >= 20'), ('vmap', '')]:
                if (name, meth) not in res: continue
                r = res[name, meth]
                ratio = s['s_per_example'] / r['s_per_example'] if meth == 'train' else r['s_per_example'] / s['s_per_example']
                what = 'sketch / train time' if meth == 'train' else f'{meth} / sketch time'
                print(f"{name}: {what} = {ratio:.2f} ({goal})" if goal else f"{name}: {what} = {ratio:.2f}")
            if (name, 'train') in res:
                print(f"{name}: sketch / train peak memory = {s['peak_extra_mb'] / max(res[name, 'train']['peak_extra_mb'], 1):.2f} (goal <= 1.5)")
    if not a.no_score:
        r = score(a.n_test, a.n_train, a.score_threads)
        print(f"scoring {r['n_test']} x {r['n_train']} at dim {r['dim']} ({r['threads']} threads): {r['seconds']:.1f} s (goal <= 120 s)")
    print(subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())

if __name__ == '__main__': main()
