"README command 1 end to end: the demo study from an empty cache learns every language, writes every result, finds the planted language structure, and ends with an executed notebook and a docs site."
import pandas as pd
import pytest, torch
from modtrace.cli import main
from modtrace.demo import DEMO_LANGS
from test_study import FIGURES, TABLES

@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('quickstart')
    mp = pytest.MonkeyPatch(); mp.setenv('MODTRACE_CACHE', str(tmp/'cache'))  # builds the demo model from scratch
    n = torch.get_num_threads(); torch.set_num_threads(2)                     # the real command's setting
    import io, contextlib
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf): main(['study', '--task', 'demo', '--out', str(tmp/'runs'), '--no-progress'])
    finally: torch.set_num_threads(n); mp.undo()
    return tmp/'runs'/'demo', buf.getvalue()

def test_demo_study_learns_every_language(demo_run):
    run, _ = demo_run
    acc = pd.read_csv(run/'accuracy.csv', index_col=0, header=[0, 1])
    full, sft = acc[('test', 'full')], acc[('test', 'sft')]
    assert list(acc.index) == [*DEMO_LANGS, 'all']
    assert (full >= 0.90).all(), f"full fine-tuning below 90% somewhere:\n{full}"
    assert (sft > 0.75).all(), f"SFT through the pruned masks failed to learn:\n{sft}"

def test_demo_study_writes_every_result(demo_run):
    run, out = demo_run
    names = [f.replace('fig3_de_', 'fig3_a1_') for f in FIGURES]                # the demo's focus language: its first
    missing = [f'{n}.{x}' for n in names for x in ('png', 'svg', 'csv') if not (run/'figures'/f'{n}.{x}').exists()]
    missing += [f'{n}.csv' for n in TABLES + ['relatedness_vs_influence.stats'] if not (run/'figures'/f'{n}.csv').exists()]
    assert not missing, f"result files missing: {missing}"
    for what in ('executed notebook:', 'figures and tables:', 'docs site:'): assert what in out, out[-2000:]

def test_cross_language_influence_ranks_pairs_as_the_planted_relatedness(demo_run):
    run, _ = demo_run
    stats = pd.read_csv(run/'figures'/'relatedness_vs_influence.stats.csv').iloc[0]
    assert stats['spearman_rho'] >= 0.8, f"Spearman {stats['spearman_rho']:.3f} [{stats['spearman_lo']:.3f}, {stats['spearman_hi']:.3f}]"
    assert stats['spearman_lo'] <= stats['spearman_rho'] <= stats['spearman_hi']

def test_executed_notebook_shows_every_section_without_errors(demo_run):
    import nbformat
    run, _ = demo_run
    nb = nbformat.read(run/'notebooks'/'study.ipynb', 4)
    outs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    assert not [o for o in outs if o.output_type == 'error']
    assert sum('image/png' in o.get('data', {}) for o in outs) >= 15                   # the figures are in the notebook
    heads = [l for c in nb.cells if c.cell_type == 'markdown' for l in c.source.splitlines() if l.startswith('## ')]
    assert any('Fig. 10' in h for h in heads) and any('Fig. 19' in h for h in heads)

from conftest import ROOT
from modtrace.docs import site_pages
from test_docs import browser, _check_page  # noqa: F401  the browser fixture: headless Chromium (Selenium)

def test_docs_site_shows_the_executed_analysis_in_chromium(demo_run, browser):  # noqa: F811  the fixture imported above
    run, _ = demo_run
    base = (run/'docs').as_uri() + '/'
    n = len(site_pages(ROOT/'nbs', {'study': run/'notebooks'/'study.ipynb'}))    # the sidebar: every page, the analysis in its place
    links = _check_page(browser, base + 'index.html', 'modtrace', n)            # the index, with the study's thumbnail
    assert 'study.html' in links
    _check_page(browser, base + 'study.html', 'The study, task by task', n)     # the executed analysis and its figures
    assert browser.execute_script("return document.images.length") >= 15
