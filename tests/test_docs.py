"""The docs site without Quarto: built from the repo's notebooks plus an executed notebook with a matplotlib
figure (standing in for the study's analysis), then opened in headless Chromium, from disk and served."""
import functools, http.server, shutil, threading
from pathlib import Path
import nbformat, pytest
from conftest import ROOT
from modtrace.docs import build_docs, sidebar

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver  (Debian; .ci/run does this)"

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site built into a temp folder, with an executed 'study' notebook holding one matplotlib figure."
    from nbclient import NotebookClient
    tmp = tmp_path_factory.mktemp('docs')
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# A tiny analysis\n> One figure.'),
        nbformat.v4.new_code_cell('%matplotlib inline\nimport matplotlib.pyplot as plt\n'
                                  'plt.figure(figsize=(3, 2)); plt.plot([0, 1, 4]); plt.title("Fig. 1")')])
    NotebookClient(nb, timeout=120, kernel_name='python3').execute()
    nbformat.write(nb, tmp/'study.ipynb')
    return build_docs(tmp/'site', pages={'study': tmp/'study.ipynb'}, quarto=False)

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
    h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site.parent))
    h.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown()

def _check_page(d, url, title):
    "Load `url`; the title, the full sidebar, and every image decoded (at least one)."
    from selenium.webdriver.support.ui import WebDriverWait
    d.get(url)
    assert d.title.startswith(title), (url, d.title)
    links = d.execute_script("return [...document.querySelectorAll('nav.sidebar li a')].map(a => a.getAttribute('href'))")
    assert len(links) == len(sidebar(ROOT/'nbs')) + (0 if 'study' in {p.name for p in sidebar(ROOT/'nbs')} else 1), links
    assert all('/' not in l and l.endswith('.html') for l in links), links  # relative, same folder
    WebDriverWait(d, 30).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    imgs = d.execute_script("return [...document.images].map(i => [i.getAttribute('src').slice(0, 40), i.naturalWidth])")
    assert imgs and all(w > 0 for _, w in imgs), (url, imgs)
    return links

def test_site_is_built_from_the_notebooks(site):
    names = {p.name for p in sidebar(ROOT/'nbs')} | {'study'}
    assert {p.stem for p in site.parent.glob('*.html')} == names
    lib = (site.parent/'01_data.html').read_text()
    assert 'celltag_docs-export' in lib and '>TaskSpec<' in lib        # library code shown, as exported source
    assert 'default_exp' not in lib and '#| export' not in lib          # hidden cells and directive lines gone

@pytest.mark.parametrize('how', ['file', 'http'])
def test_site_opens_in_chromium(site, served, browser, how):
    base = site.parent.as_uri() + '/' if how == 'file' else served
    links = _check_page(browser, base + 'index.html', 'modtrace')      # the Results thumbnail is the index's figure
    assert 'study.html' in links
    _check_page(browser, base + 'study.html', 'A tiny analysis')      # the executed figure, inline
    for l in links:                                                   # every sidebar page loads with its sidebar
        browser.get(base + l)
        assert browser.find_elements('css selector', 'nav.sidebar li a.active'), l
