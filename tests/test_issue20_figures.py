"Issue 20: every figure file is byte-reproducible (no random SVG ids, no dates)."
import numpy as np, pandas as pd
from modtrace.figures import plot_contributions, plot_correlation

def test_the_same_figure_saved_twice_gives_the_same_bytes(tmp_path):
    rng = np.random.default_rng(0)
    P = pd.DataFrame({'x': rng.uniform(size=12), 'y': rng.uniform(size=12), 'test_lang': np.repeat(['en', 'de', 'fr'], 4)})
    T = pd.DataFrame({'test_lang': np.repeat(['en', 'de'], 2), 'train_lang': ['en', 'de'] * 2, 'value': [1., -2, 3, 4],
                      'lo': [0., -3, 2, 3], 'hi': [2., -1, 4, 5], 'n': 5})
    for i in (1, 2):
        plot_correlation(P, 'x', 'y', tmp_path/f'scatter{i}', hue='test_lang', title='twice')
        plot_contributions(T, tmp_path/f'heat{i}', title='twice', delta=True)
    for stem in ('scatter', 'heat'):
        for ext in ('svg', 'png', 'csv'):
            assert (tmp_path/f'{stem}1.{ext}').read_bytes() == (tmp_path/f'{stem}2.{ext}').read_bytes(), f'{stem}.{ext}'
    assert b'<dc:date>' not in (tmp_path/'scatter1.svg').read_bytes()
