"""The study's stages at the paper's scale, per example, side by side in one run, and the projected time of the whole paper.
Not a test: timings depend on the machine and its load (the script prints `uptime`); the ratios are what to read.

    HF_HUB_OFFLINE=1 python nbs/benchmarks/study_bench.py [--size base|demo|large] [--tokens 128] [--batch 16]
        [--batches 3] [--threads 1] [--device cpu|cuda] [--precision float32|bfloat16] [--processes]

On one random-init XLM-R of the given size (base: 12 layers, 12 heads, hidden 768, FFN 3,072, vocabulary 250,002), on the same batches of
`--tokens` tokens, per example:
- `train`:      one fine-tuning step (`modtrace.finetune.train_step`: forward, backward, AdamW);
- `importance`: head importance's pass (`modtrace.subnetworks.importance`: per-example |dL/dξ|, activation-only);
- `sketch`:     `Sketcher(d=256)` on every linear layer (forward + activation-only backward, hook sketches);
- `score`:      `influence` of random float16 stores (every linear x 256): seconds per (test, train) pair.
Then the paper's work per task (SPEC 8: 10,000 training and 2,500 test examples, 5 checkpoints, the study's 23
variants) multiplied out, and the 3 tasks. With `--processes`, the sketch stage of 4,096 examples (a model of 4 layers, hidden 128) in 1 process and
in 2 (`accelerate launch`, gloo on the CPU, 1 thread each): the speed-up.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import torch

SIZES = {'demo': dict(layers=4, heads=4, hidden=64, intermediate=128, vocab=5000),            # XLM-R's shapes: FFN 4 x hidden,
         'base': dict(layers=12, heads=12, hidden=768, intermediate=3072, vocab=250_002),   # its 250,002-token vocabulary
         'large': dict(layers=24, heads=16, hidden=1024, intermediate=4096, vocab=250_002)}
PAPER = dict(n_train=10_000, n_dev=2_500, n_test=2_500, epochs=5, langs=5, tracin=5, rounds=5)

def model_of(size, tokens, device):
    from modtrace.model import toy_classifier
    s = SIZES[size]
    return toy_classifier(layers=s['layers'], heads=s['heads'], hidden=s['hidden'], vocab=s['vocab'], attn='sdpa',
                          max_positions=tokens + 4, intermediate_size=s['intermediate']).to(device)

def batches(n, B, tokens, seed=0):
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(n):
        lens = torch.randint(tokens // 2, tokens + 1, (B,), generator=g)
        ids, att = torch.full((B, tokens), 1), torch.zeros(B, tokens, dtype=torch.long)
        for i, L in enumerate(lens.tolist()): ids[i, :L] = torch.randint(3, 5000, (L,), generator=g); att[i, :L] = 1
        out.append({'input_ids': ids, 'attention_mask': att, 'labels': torch.randint(0, 2, (B,), generator=g)})
    return out

def timed(f, bs, device):
    f(bs[0])                                                          # warm-up (kernels, caches)
    if device == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    for b in bs[1:]: f(b)
    if device == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t) / sum(len(b['labels']) for b in bs[1:])

def stage_costs(a):
    "Seconds per example of a training step, an importance pass and a sketch, on the same batches."
    from accelerate import Accelerator
    from modtrace.finetune import train_step
    from modtrace.model import model_shape, cross_entropy
    from modtrace.units import head_gate
    from modtrace.sketch import Sketcher
    m, bs = model_of(a.size, a.tokens, a.device), [{k: v.to(a.device) for k, v in b.items()} for b in batches(a.batches + 1, a.batch, a.tokens)]
    rss = {'model': peak_rss()}
    acc = Accelerator(cpu=a.device == 'cpu'); opt = torch.optim.AdamW(m.parameters(), 1e-5); pm, opt = acc.prepare(m, opt); pm.train()
    train = timed(lambda b: train_step(pm, dict(b), opt, acc), bs, a.device); rss['train'] = peak_rss()
    m.eval(); L, H = model_shape(m)
    def importance(b):
        xi = torch.ones(len(b['labels']), L, H, device=a.device, requires_grad=True)
        for p in m.parameters(): p.requires_grad_(False)
        with head_gate(m, xi): loss = cross_entropy(m(input_ids=b['input_ids'], attention_mask=b['attention_mask']).logits, b['labels'], 'sum')
        torch.autograd.grad(loss, xi)
    imp = timed(importance, bs, a.device); rss['importance'] = peak_rss()
    for p in m.parameters(): p.requires_grad_(True)
    with Sketcher(m, d=256, precision=a.precision) as sk:
        sketch = timed(lambda b: sk(b), bs, a.device); dim = sk.dim
    rss['sketch'] = peak_rss()
    params = sum(p.numel() for p in m.parameters())
    return dict(train=train, importance=imp, sketch=sketch, dim=dim, params=params, peak_rss_gb=rss)

def peak_rss() -> float:
    "The process's peak resident memory so far, GB (Linux: ru_maxrss in KiB); on a GPU, torch's peak allocation instead."
    if torch.cuda.is_available(): return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

def score_cost(dim, n_test=500, n_train=4000):
    "Seconds per (test, train) pair of `influence` on float16 stores of dimension `dim`, summed over 2 checkpoints."
    from modtrace.influence import influence
    class Mem:
        def __init__(self, n, seed, ck):
            self.x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)).half()
            self.header = {'model': 'm', 'layers': ['l'], 'sizes': [dim], 'd': 256, 'seed': 0, 'exact': False, 'checkpoint': {'name': ck},
                           'mask': None, 'ids': [str(i) for i in range(n)]}
            import pandas as pd; self.meta, self.path = pd.DataFrame({'id': self.header['ids'], 'lang': 'x'}), f'/mem/{seed}'
        def __len__(self): return len(self.x)
        def rows(self, a, b): return self.x[a:b].float()
    te, tr = [Mem(n_test, 2 * e, str(e)) for e in (0, 1)], [Mem(n_train, 2 * e + 10, str(e)) for e in (0, 1)]
    t = time.perf_counter(); influence(te, tr, m=100, progress=False, per_checkpoint=True)
    return (time.perf_counter() - t) / (n_test * n_train * 2)

def paper(c, score):
    "Seconds of the paper's work per task from the per-example costs."
    P = PAPER
    train_stores = 1 + P['langs'] + 3 + P['langs'] + 2 + P['langs']                  # full, full/ℓ, random, sft/ℓ, ∩/∪, rsft/ℓ
    test_rows = P['n_test'] * 4 + 500 * (3 + 2) + 500 * 4                            # every variant's test languages
    sketches = (train_stores * P['n_train'] + test_rows) * P['tracin']
    work = {'fine-tuning (3 runs)': 3 * P['epochs'] * P['n_train'] * c['train'],
            'evaluation (per epoch)': 3 * P['epochs'] * 2 * (P['n_dev'] + P['n_test']) * c['train'] / 3,
            'pruning (importance + dev accuracy)': P['langs'] * P['rounds'] * 500 * (c['importance'] + c['train'] / 3),
            'sketching': sketches * c['sketch'],
            'scoring': (test_rows * P['n_train'] * P['tracin']) * score}
    disk = {'checkpoints (3 runs x epochs, float32)': 3 * P['epochs'] * c['params'] * 4,
            'sketch stores (float16, every store kept)': sketches * c['dim'] * 2}
    return work, sketches, disk

def processes_speedup(a):
    "Seconds of one sketch stage (4,096 examples) in 1 process and in 2 (accelerate, gloo, 1 thread each)."
    worker = os.path.join(tempfile.mkdtemp(), 'w.py')
    with open(worker, 'w') as f: f.write('''
import sys, time, torch; torch.set_num_threads(1)
from accelerate import PartialState
from datasets import Dataset
from modtrace.store import sketch_checkpoints
from modtrace.model import toy_classifier
ps = PartialState(cpu=True); m = toy_classifier(layers=4, heads=4, hidden=128, vocab=5000, max_positions=68)
ck = sys.argv[1]
if ps.is_main_process and not __import__('os').path.exists(ck):
    m.save_pretrained(ck); open(ck + '/state.json', 'w').write('{"epoch": 1, "lr": 0.001}')
ps.wait_for_everyone()
g = torch.Generator().manual_seed(0)
ds = Dataset.from_dict({'id': [str(i) for i in range(4096)], 'lang': ['x'] * 4096, 'label': [i % 2 for i in range(4096)],
                        'input_ids': [[0] + torch.randint(3, 5000, (62,), generator=g).tolist() + [2] for _ in range(4096)]})
t = time.perf_counter()
sketch_checkpoints(m, ds, [ck], sys.argv[2], progress=False, batch_size=64, part=ps.process_index, n_parts=ps.num_processes,
                   barrier=ps.wait_for_everyone)
if ps.is_main_process: print('SECONDS', time.perf_counter() - t)
''')
    d, out = tempfile.mkdtemp(), {}
    for n in (1, 2):
        cmd = ([sys.executable, worker] if n == 1 else [os.path.join(os.path.dirname(sys.executable), 'accelerate'), 'launch', '--multi_gpu',
               '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no', worker])
        r = subprocess.run(cmd + [os.path.join(d, 'ck'), os.path.join(d, f'stores{n}')], capture_output=True, text=True,
                           env={**os.environ, 'ACCELERATE_USE_CPU': 'true', 'OMP_NUM_THREADS': '1'})
        out[n] = float(next(l.split()[1] for l in r.stdout.splitlines() if l.startswith('SECONDS')))
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', default='base', choices=SIZES); p.add_argument('--tokens', type=int, default=128)
    p.add_argument('--batch', type=int, default=16); p.add_argument('--batches', type=int, default=3)
    p.add_argument('--threads', type=int, default=1); p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--precision', default='float32'); p.add_argument('--processes', action='store_true')
    a = p.parse_args(); torch.set_num_threads(a.threads)
    print(subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())
    c = stage_costs(a); s = score_cost(c['dim'])
    print(f"{a.size}, {a.tokens} tokens, batch {a.batch}, {a.threads} thread(s), {a.device}, {a.precision}: seconds per example")
    for k in ('train', 'importance', 'sketch'): print(f"  {k:10s} {c[k] * 1e3:9.2f} ms   ({c[k] / c['train']:.2f} x a training step)")
    print(f"  sketching: {1 / c['sketch']:.1f} examples/s; scoring: {1 / s / 1e6:.1f} M (test, train) pairs/s at dimension {c['dim']}")
    work, n, disk = paper(c, s)
    print(f"the paper, per task ({n:,} sketches):")
    for k, v in work.items(): print(f"  {k:38s} {v / 3600:8.2f} h")
    print(f"  {'total, one task':38s} {sum(work.values()) / 3600:8.2f} h;  3 tasks: {3 * sum(work.values()) / 3600:.2f} h")
    for k, v in disk.items(): print(f"  disk: {k:38s} {v / 1e9:8.1f} GB")
    print("  peak memory (GB, the process so far; batch %d): " % a.batch + ', '.join(f"after {k} {v:.2f}" for k, v in c['peak_rss_gb'].items()))
    if a.processes:
        t = processes_speedup(a)
        print(f"sketch stage, 4,096 examples: 1 process {t[1]:.1f} s, 2 processes {t[2]:.1f} s: speed-up {t[1] / t[2]:.2f}x")
    print(json.dumps({'costs': c, 'score': s, 'paper_hours_per_task': sum(work.values()) / 3600, 'paper_disk_gb': {k: v / 1e9 for k, v in disk.items()}}))

if __name__ == '__main__': main()
