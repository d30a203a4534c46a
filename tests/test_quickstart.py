"README command 1 end to end: the demo study builds its model, learns the task in every language, and caches."
import torch
from modtrace.study import main
from modtrace.demo import DEMO_LANGS

def test_demo_study_learns_every_language(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('MODTRACE_CACHE', str(tmp_path/'cache'))       # builds the demo model from scratch
    n = torch.get_num_threads(); torch.set_num_threads(2)              # the real command's setting
    try: main(['study', '--task', 'demo', '--out', str(tmp_path/'runs'), '--no-progress'])
    finally: torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert 'accuracy (%) per language' in out
    import pandas as pd
    acc = pd.read_csv(tmp_path/'runs'/'demo'/'accuracy.csv', index_col=0, header=[0, 1])
    full, sft = acc[('test', 'full')], acc[('test', 'sft')]
    assert list(acc.index) == [*DEMO_LANGS, 'all']
    assert (full >= 0.90).all(), f"full fine-tuning below 90% somewhere:\n{full}"
    assert (sft > 0.75).all(), f"SFT through random masks failed to learn:\n{sft}"
