"What a plain `pip install .` brings is what the library imports: settings.ini's `requirements` covers every import in modtrace/."
import ast, re, shlex, sys
from configparser import ConfigParser
from importlib.metadata import packages_distributions
from conftest import ROOT

DEV_TOOLS = {'pytest', 'pytest-xdist', 'selenium', 'jupyterlab', 'ruff', 'pre-commit'}  # never needed to run modtrace

def _norm(name:str) -> str: return re.sub(r'[-_.]+', '-', name).lower()   # PEP 503 names

def _settings(key:str) -> set:
    "Distribution names listed under `key` in settings.ini, read as setup.py reads them."
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return {_norm(re.match(r'[A-Za-z0-9._-]+', r).group()) for r in shlex.split(cfg['DEFAULT'].get(key, ''))}

def imports(src:str) -> list:
    "(line, top-level module) of every absolute import in `src`, in functions too (they run at run time as well)."
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import): out += [(node.lineno, a.name.split('.')[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level: out.append((node.lineno, node.module.split('.')[0]))
    return sorted(out)

def test_imports_finds_every_absolute_import():
    src = "import os.path, numpy as np\nfrom . import data\nfrom .x import y\ndef f():\n    from yaml import safe_load\n"
    assert imports(src) == [(1, 'numpy'), (1, 'os'), (5, 'yaml')]

def test_every_import_is_stdlib_modtrace_or_a_requirement():
    reqs, dists = _settings('requirements'), packages_distributions()
    missing = []
    for f in sorted((ROOT/'modtrace').glob('*.py')):
        for line, mod in imports(f.read_text(encoding='utf-8')):
            if mod in sys.stdlib_module_names or mod == 'modtrace': continue
            provided_by = {_norm(d) for d in dists.get(mod, [])}
            if not provided_by & reqs:
                missing.append(f"modtrace/{f.name}:{line} imports {mod!r} "
                               f"(from {', '.join(sorted(provided_by)) or 'no installed distribution'})")
    assert not missing, ("add these to `requirements` in settings.ini (a plain `pip install .` would not bring them):\n  "
                         + '\n  '.join(missing))

def test_dev_tools_stay_out_of_the_runtime_requirements():
    reqs, dev = _settings('requirements'), _settings('dev_requirements')
    assert not reqs & DEV_TOOLS, f"dev tools in `requirements` (move them to dev_requirements): {sorted(reqs & DEV_TOOLS)}"
    assert not reqs & dev, f"listed in both requirements and dev_requirements: {sorted(reqs & dev)}"
