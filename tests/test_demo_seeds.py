"The demo's planted-truth check on more seeds than the README's: the demo model of each seed, fully fine-tuned, ranks language pairs by cross-language influence as the planted relatedness does (seed 0 runs in test_quickstart)."
import pytest, torch
from modtrace.config import StudyConfig
from modtrace.methods import method_named
from modtrace.stages import prepare, finetune_stage
from modtrace.tracing import influence_stage
from modtrace.run import RunFolder
from modtrace.aggregate import relatedness_agreement

def planted_check(seed:int, out, log=lambda *a: None) -> tuple[float, float]:
    "(Spearman ρ between summed cross-language influence and the planted R over the language pairs, full FT's test accuracy)."
    c, tracin = StudyConfig.make(seed=seed, progress=False, report=False), method_named('tracin')
    run, d = RunFolder(out/f'demo-s{seed}'), prepare(c, log=log)
    full = run.cached(finetune_stage(d, 'full', progress=False, log=log))
    tr, te = (tracin.features(run, full, d.splits[s], None, d, c, log=log) for s in ('train', 'test'))
    shares, _ = run.cached(influence_stage(tracin, c, (run.folder(te).name, run.folder(tr).name), (run.cached(te), run.cached(tr))))
    pos = shares[(shares.epoch == 'sum') & (shares.which == 'pos')]
    _, st = relatedness_agreement(pos, d.spec.relatedness(seed).loc[d.langs, d.langs], n_boot=10, seed=0)
    return float(st['spearman_rho']), full.accuracy('test')['all']

@pytest.mark.parametrize('seed', [1, 2])
def test_planted_relatedness_is_found_on_other_seeds(seed, tmp_path, monkeypatch):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))          # each seed builds its own demo model
    n = torch.get_num_threads(); torch.set_num_threads(1)                 # the study's default (--threads 1)
    try: rho, acc = planted_check(seed, tmp_path/'runs')
    finally: torch.set_num_threads(n)
    assert acc >= 0.9, f"seed {seed}: full fine-tuning reached only {acc:.1%}"
    assert rho >= 0.8, f"seed {seed}: Spearman {rho:.3f} between cross-language influence and the planted relatedness"
