"Every notebook runs top to bottom (its examples are tests too), and the README is generated from index.ipynb."
import os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

NBS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))

@pytest.mark.parametrize('nb', NBS)
def test_notebook_runs(nb):
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev_test'), '--path', f'nbs/{nb}', '--do_print'],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})  # tiny examples: one thread is fastest
    assert r.returncode == 0, f"{nb} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"

def test_readme_is_generated_from_index():
    from modtrace.docs import write_readme
    import os; cwd = os.getcwd(); os.chdir(ROOT)
    try: assert not write_readme(check=True), "README.md is stale: run `python -c 'from modtrace.docs import write_readme; write_readme()'`"
    finally: os.chdir(cwd)

def test_readme_quickstart_is_two_commands_and_ci_runs_the_second():
    text = (ROOT/'README.md').read_text()
    block = text.split('## Quickstart', 1)[1].split('```sh\n', 1)[1].split('```', 1)[0]
    cmds = [l for l in block.splitlines() if l.strip()]
    assert len(cmds) == 2 and 'study --task demo' in cmds[0], cmds
    assert cmds[1] in (ROOT/'.ci'/'run').read_text()

def test_nbdev_clean_keeps_the_papermill_parameters_tag(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("task: str = 'demo'  # xnli | pawsx | marc | demo")])
    nb.cells[0].metadata.update(tags=['parameters'], collapsed=True, scrolled=False)
    f = tmp_path/'analysis.ipynb'; nbformat.write(nb, f)
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(f)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert nbformat.read(f, as_version=4).cells[0].metadata == {'tags': ['parameters']}   # tag kept, the rest cleaned
