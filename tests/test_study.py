"The study command: stages cached by their inputs, on the real samples with a tiny model."
import json
import pytest, torch
from conftest import make_tiny_model
from modtrace.study import run_study, main, fingerprint, study_masks
from modtrace.model import save_masks, random_mask

@pytest.fixture
def tiny_folder(tmp_path, tiny_tokenizer):
    m = make_tiny_model(attn='sdpa', vocab=len(tiny_tokenizer))
    path = tmp_path/'tiny-xlmr'; m.save_pretrained(path); tiny_tokenizer.save_pretrained(path)
    return path

def stages(run): return sorted(p.name for p in run.iterdir() if p.is_dir() and p.name != 'figures')

def test_study_runs_caches_and_reruns_only_what_changed(tmp_path, tiny_folder, shared_data):
    kw = dict(task='pawsx', model=str(tiny_folder), data=str(shared_data), out=tmp_path/'runs', scale=0.01,
              epochs=1, batch_size=8, progress=False, log=lambda *a: None)
    table = run_study(**kw)
    run = tmp_path/'runs'/'pawsx'
    assert list(table.index) == ['en', 'fr', 'de', 'ko', 'es', 'all']
    assert {'full', 'sft'} == {c[1] for c in table.columns} and table.notna().all().all()
    assert (run/'accuracy.csv').exists() and json.loads((run/'masks.json').read_text())['n_layers'] == 2
    first = stages(run)
    assert [s.split('-')[0] for s in first] == ['full', 'prune', 'sft']
    subnets = json.loads(next(run.glob('prune-*/subnetworks.json')).read_text())
    assert set(subnets['masks']) == {'en', 'fr', 'de', 'ko', 'es'} and set(subnets['trajectories']) == set(subnets['masks'])
    assert json.loads((run/'masks.json').read_text())['source'] == 'pruned'
    assert (run/'figures'/'table1_heads_disabled.csv').exists() and (run/'figures'/'fig11_head_usage.png').exists()
    done = {s: (run/s/'DONE').stat().st_mtime_ns for s in first if not s.startswith('prune')}
    pruned = next(run.glob('prune-*/subnetworks.json')).stat().st_mtime_ns
    run_study(**kw)                                                   # same inputs: nothing retrained or re-pruned
    assert stages(run) == first and all((run/s/'DONE').stat().st_mtime_ns == t for s, t in done.items())
    assert next(run.glob('prune-*/subnetworks.json')).stat().st_mtime_ns == pruned
    f = save_masks(tmp_path/'given.json', {l: random_mask(2, 4, 2, seed=i) for i, l in enumerate(['en', 'fr', 'de', 'ko', 'es'])})
    run_study(**kw, masks=str(f))                                     # new masks: SFT again, full FT reused
    now = stages(run)
    assert len(now) == 4 and set(first) < set(now) and sum(s.startswith('full') for s in now) == 1
    assert json.loads((run/'masks.json').read_text())['source'] == str(f)
    run_study(**kw, masks='random')                                   # random-mask baseline: one more SFT stage
    assert len(stages(run)) == 5

def test_mask_file_must_cover_every_language(tmp_path):
    f = save_masks(tmp_path/'m.json', {'en': torch.ones(2, 4)})
    with pytest.raises(ValueError, match=r"no mask for language\(s\) \['de'\]"): study_masks(['en', 'de'], (2, 4), f)

def test_fingerprint_is_order_free_and_input_sensitive():
    assert fingerprint(a=1, b=[1, 2]) == fingerprint(b=[1, 2], a=1) != fingerprint(a=1, b=[2, 1])

def test_cli_bad_input_is_one_line(capsys):
    with pytest.raises(SystemExit, match=r"modtrace: error: .*Unknown task 'nli'"): main(['study', '--task', 'nli'])
