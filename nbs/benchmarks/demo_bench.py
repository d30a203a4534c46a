"""Benchmark of the demo task: build the data and the MLM-pretrained demo model, fully fine-tune it with a
minimal plain-torch loop (AdamW, linear decay, the classifier head of XLMRobertaForSequenceClassification),
print per-language test accuracy and the times. Not a test: timings depend on the machine and its load.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python nbs/benchmarks/demo_bench.py [--fresh] [--task demo demo_single]
        [--trainer plain|modtrace] [--seed 0] [--lr 1e-3 --epochs 10 --schedule linear|constant]

`--trainer modtrace` fine-tunes with `modtrace.finetune.finetune` (the package's loop: constant learning rate,
gradient clipping) instead of the plain loop. Set TQDM_DISABLE=1 for quiet output.
"""
import argparse, json, os, subprocess, tempfile, time
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import torch

def finetune_plain(path, splits, lr, epochs, batch_size=32, seed=0, log=print, schedule='linear'):
    "Full fine-tuning, AdamW (weight decay 0.01) with linear decay; per-language test accuracy after each epoch."
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging
    from modtrace.data import tokenize
    logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    cols = ['input_ids', 'attention_mask', 'label']
    tr, te = (tokenize(splits[s], tok) for s in ('train', 'test'))
    def batches(ds, order, bs):
        for b in range(0, len(order), bs):
            rows = [ds[int(i)] for i in order[b:b+bs]]
            enc = tok.pad([{k: r[k] for k in cols[:2]} for r in rows], return_tensors='pt')
            yield enc, torch.tensor([r['label'] for r in rows]), [r['lang'] for r in rows]
    steps = epochs * -(-len(tr) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, (lambda s: max(0., 1 - s / steps)) if schedule == 'linear' else (lambda s: 1.))
    hist = []
    for e in range(epochs):
        t0 = time.time(); model.train()
        for enc, y, _ in batches(tr, torch.randperm(len(tr)).tolist(), batch_size):
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
            loss.backward(); opt.step(); sched.step(); opt.zero_grad()
        model.eval(); right, n = {}, {}
        with torch.no_grad():
            for enc, y, langs in batches(te, list(range(len(te))), 256):
                ok = (model(**enc).logits.argmax(-1) == y).tolist()
                for l, o in zip(langs, ok): right[l] = right.get(l, 0) + o; n[l] = n.get(l, 0) + 1
        acc = {l: right[l] / n[l] for l in n}
        hist.append(acc)
        log(f"  epoch {e+1}: {time.time()-t0:5.1f}s loss {loss.item():.3f} test acc " + ' '.join(f"{l} {a:.3f}" for l, a in acc.items())
            + f"  min {min(acc.values()):.3f}")
    return hist

def finetune_modtrace(path, splits, lr, epochs, batch_size=32, seed=0, log=print):
    "The package's full fine-tuning (modtrace.finetune, its defaults) in a temporary run folder."
    from modtrace.model import load_classifier, load_tokenizer
    from modtrace.finetune import finetune
    r = finetune(load_classifier(path, seed=seed), load_tokenizer(path), splits, tempfile.mkdtemp(prefix='demo-bench-ft-'),
                 lr, epochs, batch_size=batch_size, seed=seed, progress=False)
    hist = [{l: a for l, a in e['test'].items() if l != 'all'} for e in r.results['epochs']]
    for e, acc in enumerate(hist):
        log(f"  epoch {e+1}: test acc " + ' '.join(f"{l} {a:.3f}" for l, a in acc.items()) + f"  min {min(acc.values()):.3f}")
    return hist

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--scale', type=float, default=1.0)
    ap.add_argument('--fresh', action='store_true', help='build in an empty cache (times the pretraining)')
    ap.add_argument('--task', nargs='+', default=['demo', 'demo_single'])
    ap.add_argument('--lr', type=float, default=None); ap.add_argument('--epochs', type=int, default=None)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--schedule', default='linear', choices=['linear', 'constant'], help='learning-rate schedule')
    ap.add_argument('--trainer', default='plain', choices=['plain', 'modtrace'])
    ap.add_argument('--model', default='{}', help='JSON overrides of modtrace.demo.MODEL_DEFAULTS')
    a = ap.parse_args()
    if a.fresh: os.environ['MODTRACE_CACHE'] = tempfile.mkdtemp(prefix='modtrace-bench-')
    from modtrace import demo
    from modtrace.data import load_splits
    from modtrace.tasks import get_task
    print('load:', subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip(), '| torch threads', torch.get_num_threads())
    t0 = time.time(); root = demo.demo_data(a.seed, a.scale); t_data = time.time() - t0
    t0 = time.time(); path = demo.demo_model(a.seed, **json.loads(a.model)); t_model = time.time() - t0
    info = json.loads((path/'pretrain.json').read_text())
    print(f"data {t_data:.1f}s; model {t_model:.1f}s (built: {demo.BUILDS['model'] > 0}; recorded build {info['seconds']}s, "
          f"MLM loss per epoch {[round(x, 3) for x in info['mlm_loss']]})")
    for task in a.task:
        spec = get_task(task)
        lr, epochs = a.lr or spec.lr, a.epochs or spec.epochs
        splits = load_splits(task, n_train=None, n_dev=None, n_test=None, seed=a.seed, scale=a.scale)
        print(f"{task}: train {len(splits['train'])} test {len(splits['test'])}, lr {lr} ({a.schedule if a.trainer == 'plain' else 'modtrace.finetune defaults'}) epochs {epochs} batch {a.batch_size}")
        t0 = time.time()
        if a.trainer == 'plain': hist = finetune_plain(path, splits, lr, epochs, a.batch_size, a.seed, schedule=a.schedule)
        else: hist = finetune_modtrace(path, splits, lr, epochs, a.batch_size, a.seed)
        print(f"{task}: fine-tuning {time.time()-t0:.1f}s, final min accuracy {min(hist[-1].values()):.3f}")
    print('load:', subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())

if __name__ == '__main__': main()
