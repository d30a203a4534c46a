"""EK-FAC influence functions (issue 21): the factors and the preconditioned features against kronfluence itself, against
a dense computation of EK-FAC's definition under per-language masks, and as a study method."""
import copy, json
import numpy as np, pytest, torch
import torch.nn.functional as F
from datasets import Dataset
from test_study import kw
from modtrace.batching import example_loader
from modtrace.config import StudyConfig
from modtrace.ekfac import EKFACFactors, EKFACProjector, SampledLoss, ekfac_factors
from modtrace.finetune import checkpoint_dir
from modtrace.model import load_checkpoint, load_model, toy_classifier
from modtrace.sketch import Sketcher, SketchError, explicit_grads, iter_sketches
from modtrace.stages import prepare
from modtrace.store import SketchStore
from modtrace.study import run_study
from modtrace.units import gated
torch.set_num_threads(1)

def rows(n, pre, seed, vocab=40, classes=3):
    "n examples of 3 to 8 random tokens (never the pad id 1), in two languages, with random labels."
    rng = np.random.default_rng(seed)
    L = rng.integers(3, 9, n)
    return Dataset.from_dict({'id': [f'{pre}{i}' for i in range(n)], 'lang': ['en', 'de'] * (n // 2), 'label': rng.integers(0, classes, n).tolist(),
                              'input_ids': [rng.integers(3, vocab, l).tolist() for l in L]})

def features(model, ds, P, xi=None):
    with Sketcher(model, projector=P) as sk: return torch.cat([s for _, s, _, _ in iter_sketches(sk, ds, xi, 8, progress=False)])

def influence(model, f, test, train, xi=None):
    "Every test example's EK-FAC influence of every training example, from whole whitened gradients: (n_test, n_train)."
    P = EKFACProjector(f, exact=True)
    return features(model, test, P, xi) @ features(model, train, P, xi).T

def kronfluence_scores(model, train, test, out, xi=None):
    "kronfluence 1.0.1's EK-FAC pairwise scores (empirical Fisher, its heuristic damping), the head gate around its every pass."
    try:
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.task import Task
        from kronfluence.utils.dataset import DataLoaderKwargs
    except ImportError:
        pytest.fail("kronfluence (the reference for EK-FAC) is missing: `bash .ci/venv` installs it; by hand: "
                    "pip install --no-deps kronfluence==1.0.1 (its torchvision dependency breaks transformers' import with a CPU torch)")
    class T(Task):
        def compute_train_loss(self, batch, model, sample=False):
            with gated(model, xi): logits = model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).logits
            return F.cross_entropy(logits, batch['labels'], reduction='sum')
        def compute_measurement(self, batch, model): return self.compute_train_loss(batch, model)
        def get_attention_mask(self, batch): return batch['attention_mask']
    def collate(rs):
        b = next(iter(example_loader(Dataset.from_list(rs), model.config.pad_token_id, len(rs), ['en', 'de'])))
        return {k: b[k] for k in ('input_ids', 'attention_mask', 'labels')}
    an = Analyzer('ekfac', prepare_model(copy.deepcopy(model), T()), T(), cpu=True, output_dir=str(out), disable_tqdm=True)
    an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=collate))
    f64 = dict(activation_covariance_dtype=torch.float64, gradient_covariance_dtype=torch.float64, lambda_dtype=torch.float64)
    an.fit_all_factors('f', dataset=train, per_device_batch_size=8, overwrite_output_dir=True,
                       factor_args=FactorArguments(strategy='ekfac', use_empirical_fisher=True, **f64))
    an.compute_pairwise_scores('s', 'f', query_dataset=test, train_dataset=train, per_device_query_batch_size=len(test),
                               per_device_train_batch_size=8, score_args=ScoreArguments(damping_factor=None), overwrite_output_dir=True)
    return an.load_pairwise_scores('s')['all_modules']

@pytest.mark.parametrize('gate', [False, True])
def test_ekfac_influence_equals_kronfluence(gate, tmp_path):
    "A tiny Llama classifier (no biases: kronfluence would add them to the layers' factors), padded batches, 3 classes, with and without a head gate."
    model = toy_classifier(family='llama', layers=2, heads=2, hidden=8, vocab=40, num_labels=3, seed=0)
    train, test = rows(24, 'tr', 0), rows(6, 'te', 1)
    xi = torch.tensor([[1., 0.], [0., 1.]]) if gate else None
    ours = influence(model, ekfac_factors(model, train, xi, fisher='empirical', batch_size=8), test, train, xi)
    kf = kronfluence_scores(model, train, test, tmp_path, xi)   # (kronfluence writes its factors and scores to disk)
    assert ours.shape == kf.shape == (6, 24)
    assert (ours - kf).abs().max() <= 1e-5 * kf.abs().max()             # measured: 2.4e-7 and 2.5e-7 of the largest score

def test_ekfac_under_per_language_masks_equals_its_dense_definition():
    "Per-language head masks, an XLM-R toy: the features' dot products equal ∇L(z')ᵀ (G_EKFAC + λ)⁻¹ ∇L(z), each block solved densely."
    model = toy_classifier(layers=2, heads=2, hidden=8, vocab=40, num_labels=3, seed=1)
    train, test = rows(16, 'tr', 2), rows(4, 'te', 3)
    xi = {'en': torch.tensor([[1., 0.], [1., 1.]]), 'de': torch.tensor([[0., 1.], [1., 0.]])}
    f = ekfac_factors(model, train, xi, fisher='empirical', batch_size=5)
    ours = influence(model, f, test, train, xi)
    def grads(ds):
        b = next(iter(example_loader(ds, model.config.pad_token_id, len(ds), ['en', 'de'])))
        return explicit_grads(model, b, xi=torch.stack([xi[l] for l in ds['lang']]))       # (B, Σ m·n), each example under its language's mask
    g_test, g_train = grads(test), grads(train)
    dense, i = 0, 0
    for n in f.names:
        m_, n_ = f.lam[n].shape
        Q = torch.kron(f.QS[n].double(), f.QA[n].double())
        H = Q @ torch.diag((f.lam[n] + f.damping[n]).double().flatten()) @ Q.T
        dense = dense + g_test[:, i:i + m_ * n_].double() @ torch.linalg.solve(H, g_train[:, i:i + m_ * n_].double().T); i += m_ * n_
    assert (ours.double() - dense).abs().max() <= 1e-4 * dense.abs().max()
    # Λ is the mean squared gradient in the eigenbases: its sum is the mean squared norm of the masked gradients
    sizes = [f.lam[n].numel() for n in f.names]
    for n, part in zip(f.names, g_train.split(sizes, 1)):
        assert float(f.lam[n].sum()) == pytest.approx(float(part.square().sum(1).mean()), rel=1e-4)

def test_factors_are_reproducible_saved_whole_and_checked(tmp_path):
    model = toy_classifier(layers=1, heads=2, hidden=8, vocab=40, num_labels=3, seed=0)
    train = rows(10, 'tr', 4)
    a, b = ekfac_factors(model, train, seed=5, batch_size=4), ekfac_factors(model, train, seed=5, batch_size=4)
    assert all(torch.equal(a.lam[n], b.lam[n]) for n in a.names)               # the sampled labels are seeded
    c = ekfac_factors(model, train, seed=6, batch_size=4)
    assert any(not torch.equal(a.lam[n], c.lam[n]) for n in a.names)
    e = ekfac_factors(model, train, fisher='empirical', damping=0.5, batch_size=4)
    assert set(e.damping.values()) == {0.5}
    a.save(tmp_path/'f.safetensors'); r = EKFACFactors.load(tmp_path/'f.safetensors')
    assert r.names == a.names and r.damping == a.damping and all(torch.equal(r.QA[n], a.QA[n]) and torch.equal(r.lam[n], a.lam[n]) for n in a.names)
    with pytest.raises(SketchError, match="fisher must be one of sampled, empirical, not 'true'"): ekfac_factors(model, train, fisher='true')
    with pytest.raises(SketchError, match="damping must be None"): ekfac_factors(model, train, damping=-1.0)

def test_sampled_labels_follow_the_model():
    "The Fisher's labels are drawn from the model's prediction: their frequencies match its probabilities."
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(4000, 1)
    seen = []
    loss = SampledLoss(lambda z, y, reduction: seen.append(y) or torch.zeros(len(y)), seed=0)
    loss(logits, torch.zeros(4000, dtype=torch.long), 'none')
    freq = torch.bincount(seen[0], minlength=3) / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)

def test_a_study_with_ekfac(tmp_path, tiny_folder, shared_data):
    "TracIn and EK-FAC in one study: EK-FAC's factors and features at the final checkpoint, its results folder, and its stored rows recomputed."
    run_study(**kw(tiny_folder, shared_data, tmp_path), method=['tracin', 'ekfac'], check_estimator=0, layer_groups=False)
    run = tmp_path/'pawsx'
    rec = json.loads((run/'study.json').read_text())
    assert rec['settings']['method'] == ['tracin', 'ekfac']
    key = lambda f: json.loads((run/f/'stage.json').read_text())['key']
    inf = key(rec['stages']['methods']['ekfac']['influence']['full'])
    assert inf['method'] == 'ekfac' and inf['norm'] == 'dot'
    train = key(inf['train'])
    assert train['epochs'] == [2] and (run/train['factors']/'factors.safetensors').exists()
    assert (run/'figures'/'ekfac'/'fig10_full_positive.csv').exists() and (run/'figures'/'method_agreement.csv').exists()
    # the stored training rows are the Sketcher's with EK-FAC's projector, recomputed here from the factors on disk
    c = dict(kw(tiny_folder, shared_data, tmp_path)); c.pop('log')
    d = prepare(StudyConfig.make(**c), log=lambda *a: None)
    f = EKFACFactors.load(run/train['factors']/'factors.safetensors')
    model = load_model(tiny_folder, 'sequence', num_labels=2)
    load_checkpoint(model, checkpoint_dir(run/rec['stages']['full'], 2))
    ds = d.splits['train'].select(range(8))
    want = features(model.eval(), ds, EKFACProjector(f, d=256, seed=0))
    store = SketchStore(run/inf['train']/'epoch-2')
    assert store.header['dtype'] == 'float32'
    got = store.rows(0, 8).float()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
    # and the factors are those of the training set at the final checkpoint, labels drawn with the study's seed
    again = ekfac_factors(model.eval(), d.splits['train'], seed=d.hp['seed'])
    assert all(torch.allclose(again.lam[n], f.lam[n], rtol=1e-4, atol=1e-8) for n in f.names)
    # the analysis notebook reads a study of several methods: each method's conclusions, and whether their signs agree
    from modtrace.report import execute_analysis
    nb = json.loads(execute_analysis(run, log=lambda *a: None).read_text())
    text = '\n'.join(''.join(o.get('data', {}).get('text/plain', '') or o.get('text', '')) for c in nb['cells'] if c['cell_type'] == 'code' for o in c['outputs'])
    assert 'same sign under every method' in text and 'EK-FAC influence' in text
