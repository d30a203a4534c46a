"""The docs site without Quarto: built from the repo's notebooks by nbdev's processors and nbconvert, plus an
executed notebook with a matplotlib figure (standing in for the study's analysis); checked for an API entry of
every exported name, then opened in headless Chromium, from disk and served: sidebar, figures, equations."""
import functools, html, http.server, importlib, re, threading, time
from pathlib import Path
import nbformat, pytest
from conftest import ROOT
from modtrace.docs import default_exp, site_pages
from modtrace.site import build_docs, static_site

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver  (Debian; the project's set-up does this)"
EQUATIONS = ['04_units', '09_subnetworks', '10_sketch', '12_influence']  # pages holding the paper's display equations

@pytest.fixture(scope='module')
def study_nb(tmp_path_factory):
    "An executed 'study' notebook holding one matplotlib figure."
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# A tiny analysis\n> One figure.'),
        nbformat.v4.new_code_cell('%matplotlib inline\nimport matplotlib.pyplot as plt\n'
                                  'plt.figure(figsize=(3, 2)); plt.plot([0, 1, 4]); plt.title("Fig. 1")')])
    NotebookClient(nb, timeout=120, kernel_name='python3').execute()
    nbformat.write(nb, p := tmp_path_factory.mktemp('run')/'study.ipynb')
    return p

@pytest.fixture(scope='module')
def site(study_nb, tmp_path_factory):
    "The site built into a temp folder (its build time printed: the study builds it at the end of every run)."
    t = time.time()
    idx = build_docs(tmp_path_factory.mktemp('docs')/'site', pages={'study': study_nb}, quarto=False)
    print(f"docs site built in {time.time() - t:.1f} s")
    return idx

def _page(site, name): return (site.parent/f'{name}.html').read_text(encoding='utf-8')

def _h3(text):
    "The text of every h3 heading of a page (where `show_doc` and the constants' entries put each name)."
    return {html.unescape(re.sub(r'<[^>]+>', '', h)).rstrip('#').strip() for h in re.findall(r'<h3[^>]*>(.*?)</h3>', text, re.S)}

def test_site_is_built_from_the_notebooks(site, study_nb):
    assert {p.stem for p in site.parent.glob('*.html')} == {p.name for p in site_pages(ROOT/'nbs', {'study': study_nb})}
    lib = _page(site, '01_tasks')
    assert '<h1 class="title">Tasks</h1>' in lib                  # nbdev's front matter: the title block
    assert '<h3 id="taskspec">TaskSpec' in lib and '<span class="nf">TaskSpec</span>' in lib  # show_doc's output
    assert 'default_exp' not in lib and '#|' not in lib and 'show_doc(' not in lib  # directives and show_doc calls gone
    assert 'href="01_tasks.html#taskspec"' in lib and 'modtrace.github.io' not in lib   # nbdev's doc links point here
    assert (site.parent/'mathjax'/'tex-svg-full.js').stat().st_size > 1_000_000

def test_every_exported_name_has_an_api_entry(site):
    "Every module's notebook has a page whose API entries (h3 headings) name everything in the module's `__all__`."
    import modtrace
    mods = {m: f.stem for f in (ROOT/'nbs').glob('*.ipynb') if (m := default_exp(f))}
    lib = {p.stem for p in Path(modtrace.__file__).parent.glob('*.py') if not p.stem.startswith('_')}
    assert lib <= set(mods), f"modules without a notebook: {sorted(lib - set(mods))}"
    missing = {m: sorted(set(importlib.import_module(f'modtrace.{m}').__all__) - _h3(_page(site, page))) for m, page in mods.items()}
    assert not any(missing.values()), {m: v for m, v in missing.items() if v}

def test_a_library_notebook_missing_from_the_sidebar_gets_a_page(tmp_path):
    nbs = tmp_path/'nbs'; nbs.mkdir()
    (nbs/'_quarto.yml').write_text("website:\n  sidebar:\n    contents: [index.ipynb]\n")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# Tiny\n> Tiny.')]), nbs/'index.ipynb')
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('#| default_exp new'),
        nbformat.v4.new_markdown_cell('# New\n> Not listed yet.'), nbformat.v4.new_code_cell('#| export\nN = 3  # three')]), nbs/'11_new.ipynb')
    idx = static_site(tmp_path/'site', nbs=nbs, site='tiny')
    assert '<h3>Other modules</h3>' in idx.read_text() and 'N' in _h3(_page(idx, '11_new'))

def test_equations_are_left_to_mathjax(site):
    for name in EQUATIONS:
        page = _page(site, name)
        assert page.count('$$') >= 2 and '<script defer="" id="MathJax-script" src="mathjax/tex-svg-full.js">' in page, name

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "Headless Chromium through Selenium, offline: no Selenium Manager, no network lookups."
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing: pytest.fail(f"{', '.join(missing)} missing: the docs test needs headless Chromium. Install it with: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-dev-shm-usage',
              '--disable-background-networking', '--disable-component-update', '--disable-sync', '--window-size=1200,900',
              f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(a)
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()

@pytest.fixture(scope='module')
def served(site):
    "The site served over HTTP on a free local port."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site.parent)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown()

def _check_page(d, url, title, n_links):
    "Load `url`; the title, the full sidebar, and every image decoded (at least one)."
    from selenium.webdriver.support.ui import WebDriverWait
    d.get(url)
    assert d.title.startswith(title), (url, d.title)
    links = d.execute_script("return [...document.querySelectorAll('nav.sidebar li a')].map(a => a.getAttribute('href'))")
    assert len(links) == n_links, links
    assert all('/' not in l and l.endswith('.html') for l in links), links  # relative, same folder
    WebDriverWait(d, 30).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    imgs = d.execute_script("return [...document.images].map(i => [i.getAttribute('src').slice(0, 40), i.naturalWidth])")
    assert imgs and all(w > 0 for _, w in imgs), (url, imgs)
    return links

def _typeset(d, url):
    "Load `url` and wait for MathJax: (display equations typeset, equations typeset, errors, text with a '$$' left)."
    from selenium.webdriver.support.ui import WebDriverWait
    d.get(url)
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"))
    d.execute_async_script("const done = arguments[arguments.length - 1]; MathJax.startup.promise.then(() => done(true))")
    return d.execute_script("""const c = [...document.querySelectorAll('mjx-container')];
        return [c.filter(e => e.getAttribute('display') === 'true' && e.querySelector('svg') && e.getBoundingClientRect().height > 15).length,
                c.length, document.querySelectorAll('mjx-merror, [data-mjx-error]').length, document.body.innerText.includes('$$')]""")

@pytest.mark.parametrize('how', ['file', 'http'])
def test_site_opens_in_chromium(site, served, browser, study_nb, how):
    base = site.parent.as_uri() + '/' if how == 'file' else served
    n = len(site_pages(ROOT/'nbs', {'study': study_nb}))
    links = _check_page(browser, base + 'index.html', 'modtrace', n)     # the Results thumbnail is the index's figure
    assert 'study.html' in links
    _check_page(browser, base + 'study.html', 'A tiny analysis', n)     # the executed figure, inline
    for l in links:                                                     # every sidebar page loads with its sidebar
        browser.get(base + l)
        assert browser.find_elements('css selector', 'nav.sidebar li a.active'), l

@pytest.mark.parametrize('how', ['file', 'http'])
def test_equations_render_offline(site, served, browser, how):
    "The paper's equations typeset by the site's own MathJax (the machine has no internet): SVG, no error, no '$$' left."
    base = site.parent.as_uri() + '/' if how == 'file' else served
    for name in EQUATIONS:
        shown, total, errors, raw = _typeset(browser, base + f'{name}.html')
        assert shown >= 1 and total >= shown and errors == 0 and not raw, (name, shown, total, errors, raw)
