"""What pinning the CPU kernels costs (`--cpu-kernels`): training steps and sketching of a demo-sized XLM-R, timed
in one process per pin, the pins interleaved over rounds so the machine's load falls on each alike; prints each
pin's median time and its ratio to the machine's own kernels, and whether the weights after the steps differ.

    python nbs/benchmarks/cpu_kernels_bench.py [--rounds 3] [--steps 20]
"""
import argparse, json, os, statistics, subprocess, sys

CHILD = r'''
import json, sys, time, torch
torch.set_num_threads(1); torch.manual_seed(0)
from modtrace.model import toy_classifier, cross_entropy
steps = int(sys.argv[1])
m = toy_classifier(layers=4, heads=4, hidden=128, vocab=5000, seed=0, max_positions=130)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
x = torch.randint(5, 5000, (32, 48)); y = torch.randint(0, 2, (32,))
t0 = time.perf_counter()
for _ in range(steps):
    loss = cross_entropy(m(input_ids=x).logits, y).mean(); loss.backward(); opt.step(); opt.zero_grad()
train = time.perf_counter() - t0
print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), 'train_s': train,
                  'weights': float(sum(p.double().sum() for p in m.parameters()))}))
'''

def run(pin, steps):
    from modtrace.core import cpu_kernels_env
    env = {k: v for k, v in os.environ.items() if k not in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS')}
    if pin != 'machine': env.update(cpu_kernels_env(pin))
    out = subprocess.run([sys.executable, '-c', CHILD, str(steps)], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--rounds', type=int, default=3); p.add_argument('--steps', type=int, default=20)
    a = p.parse_args()
    pins, got = ['machine', 'avx2', 'default'], {}
    for r in range(a.rounds):
        for pin in pins: got.setdefault(pin, []).append(run(pin, a.steps))
    base = statistics.median(g['train_s'] for g in got['machine'])
    for pin in pins:
        t = statistics.median(g['train_s'] for g in got[pin])
        print(f"{pin:8s} kernels {got[pin][0]['capability']:8s} {a.steps} training steps: {t:6.2f} s  ({t / base:.2f}x the machine's)"
              f"  weights sum {got[pin][0]['weights']:.10f}")
