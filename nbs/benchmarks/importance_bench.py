"""Benchmark: head-importance pass (mask gradient only, weights frozen) vs a plain forward + loss.backward() with weight gradients.
Run: HF_HUB_OFFLINE=1 .venv/bin/python nbs/benchmarks/importance_bench.py   (goal: ratio <= 0.75)"""
import os, time
import torch
from datasets import Dataset
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
from modtrace.subnetworks import importance
from modtrace.batching import example_loader
torch.set_num_threads(int(os.environ.get('BENCH_THREADS', 1)))

def model_of(layers, heads, hidden, vocab=1000):
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4*hidden, max_position_embeddings=66, pad_token_id=1, num_labels=2)
    return XLMRobertaForSequenceClassification(cfg).eval()

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

def timed(f, reps=2):
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
    return best

for name, (L, H, D), n, bs, T in [('demo-sized 4x4 h64', (4, 4, 64), 64, 16, 32), ('base-sized 12x12 h768', (12, 12, 768), 48, 16, 32)]:
    model, ds = model_of(L, H, D), data(n, T)
    plain(model, ds.select(range(bs)), bs); importance(model, ds.select(range(bs)), batch_size=bs)  # warm-up
    t_imp = timed(lambda: importance(model, ds, batch_size=bs))
    t_full = timed(lambda: plain(model, ds, bs))
    print(f"{name}: {n // bs} batches of {bs}x{T} tokens | importance {t_imp:.3f}s | forward+backward(weights) {t_full:.3f}s "
          f"| ratio {t_imp / t_full:.2f} (goal <= 0.75) | threads {torch.get_num_threads()}")
