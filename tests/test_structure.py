"""The package's shape, checked from its source with `ast` (nothing is imported).

modtrace is laid out in floors (see ARCHITECTURE.md in the shared folder): each module has one job and
imports only from the floors below it. These tests hold that layout in place while it is refactored:
no module reaches into another's private names (what is shared gets a public name, or moves), no import
runs in a circle (not even a lazy one inside a function), and no module or function grows past a size
one can read at once. Each check takes a package folder, so the tests first prove it on tiny packages.
"""
import ast, textwrap
from pathlib import Path

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 40
PKG = Path(__file__).resolve().parents[1]/'modtrace'

def modules(pkg: Path) -> dict:
    "{module name: parsed tree} of the package's modules (all but the generated `_modidx.py`)."
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(pkg.glob('*.py')) if p.name != '_modidx.py'}

def private(name: str) -> bool: return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))

def module_of(dotted: str, pkg: Path):
    "The package's module that `dotted` ('modtrace.x', 'modtrace.x.y') names, or None."
    parts = dotted.split('.')
    return parts[1] if len(parts) > 1 and parts[0] == pkg.name and (pkg/f'{parts[1]}.py').exists() else None

def imports(tree, pkg: Path):
    "Yield (node, module imported, names taken from it) for every import of a package module, at any depth."
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = pkg.name if node.level else (node.module or '')
            dotted = f"{base}.{node.module}" if node.level and node.module else base
            if mod := module_of(dotted, pkg): yield node, mod, [a.name for a in node.names]
            elif dotted == pkg.name:  # `from . import b` / `from modtrace import b`: each name may be a module
                for a in node.names: yield node, module_of(f'{pkg.name}.{a.name}', pkg), [a.name]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if mod := module_of(a.name, pkg): yield node, mod, []
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', '')
            if 'import' in fn and isinstance(node.args[0].value, str) and (mod := module_of(node.args[0].value, pkg)):
                yield node, mod, []  # importlib.import_module('modtrace.x') and helpers like it

def dotted_name(node):
    if isinstance(node, ast.Name): return node.id
    if isinstance(node, ast.Attribute) and (base := dotted_name(node.value)): return f'{base}.{node.attr}'

def private_imports(pkg: Path) -> list:
    "Every use in one module of a private name of another: `from .b import _x`, `b._x`, `modtrace.b._x`."
    found = []
    for name, tree in modules(pkg).items():
        aliases = {}  # local name -> package module it stands for
        for node, mod, names in imports(tree, pkg):
            if isinstance(node, ast.ImportFrom):
                found += [f'{name}.py:{node.lineno} imports {n} from {"." * node.level}{node.module or ""}'
                          for n in names if private(n) and mod != name]
                if mod and not node.module: aliases.update({a.asname or a.name: mod for a in node.names if a.name == names[0]})
            elif isinstance(node, ast.Import): aliases.update({a.asname: mod for a in node.names if a.asname and module_of(a.name, pkg) == mod})
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and private(node.attr)): continue
            base = dotted_name(node.value) or ''
            mod = aliases.get(base) or module_of(base, pkg)
            if mod and mod != name: found.append(f'{name}.py:{node.lineno} uses {mod}.{node.attr}')
    return found

def import_graph(pkg: Path) -> dict:
    return {name: sorted({mod for _, mod, _ in imports(tree, pkg) if mod and mod != name})
            for name, tree in modules(pkg).items()}

def import_circles(pkg: Path) -> list:
    "Every simple circle of imports among the package's modules, as 'a -> b -> a' (each once, from its least module)."
    graph, found = import_graph(pkg), set()
    def walk(path):
        for nxt in graph.get(path[-1], []):
            if nxt == path[0]: found.add(' -> '.join(path + [nxt]))
            elif nxt > path[0] and nxt not in path: walk(path + [nxt])
    for start in graph: walk([start])
    return sorted(found)

def long_modules(pkg: Path) -> list:
    return [f'{p.stem} ({n} lines)' for p in sorted(pkg.glob('*.py'))
            if p.name != '_modidx.py' and (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]

def long_functions(pkg: Path) -> list:
    "Every function or method whose body (after its docstring) runs past MAX_FUNCTION_LINES, as 'module.qualname (N lines)'."
    found = []
    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            qual = f'{prefix}.{child.name}' if hasattr(child, 'name') and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = child.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                   and isinstance(body[0].value.value, str): body = body[1:]
                if (n := child.end_lineno - body[0].lineno + 1) > MAX_FUNCTION_LINES: found.append(f'{qual} ({n} lines)')
            visit(child, qual)
    for name, tree in modules(pkg).items(): visit(tree, name)
    return found

def report(offenders, what, hint): return f"{len(offenders)} {what}:\n  " + '\n  '.join(offenders) + f"\n{hint}"

# --- the checks, proved on tiny packages -------------------------------------------------------------
def make_pkg(tmp_path, **files) -> Path:
    pkg = tmp_path/'modtrace'
    pkg.mkdir()
    for name, src in {'__init__': '__version__ = "0"\n', **files}.items(): (pkg/f'{name}.py').write_text(src)
    return pkg

def body(n): return 'def f():\n    "Doc."\n' + '    x = 1\n' * n

def test_private_imports_found(tmp_path):
    pkg = make_pkg(tmp_path, b='_x = 1\ny = 2\n', a='from .b import _x, y\nfrom modtrace.b import _x\nfrom modtrace import __version__\n',
                   c='import modtrace.b as b\nb._x\nimport modtrace.b\nmodtrace.b._x\n', d='from . import b\nb._x\nb.y\nself._z = 1\n',
                   e='import importlib\nimportlib.import_module("modtrace.b")._x\n_own = 1\n')
    assert private_imports(pkg) == ['a.py:1 imports _x from .b', 'a.py:2 imports _x from modtrace.b', 'c.py:2 uses b._x',
                                    'c.py:4 uses b._x', 'd.py:2 uses b._x']

def test_import_circles_found(tmp_path):
    pkg = make_pkg(tmp_path, a='from .b import y\nimport modtrace\n', b='def y():\n    from modtrace.c import z\n',
                   c='import importlib\ndef z(): return importlib.import_module("modtrace.a")\n', d='from . import a\n')
    assert import_graph(pkg)['a'] == ['b']
    assert import_circles(pkg) == ['a -> b -> c -> a']

def test_long_code_found(tmp_path):
    pkg = make_pkg(tmp_path, a=body(MAX_FUNCTION_LINES), b='class K:\n' + textwrap.indent(body(MAX_FUNCTION_LINES + 1), '    '),
                   c='\n' * (MAX_MODULE_LINES + 1))
    assert long_functions(pkg) == [f'b.K.f ({MAX_FUNCTION_LINES + 1} lines)']
    assert long_modules(pkg) == [f'c ({MAX_MODULE_LINES + 1} lines)']

# --- the real package --------------------------------------------------------------------------------
def test_no_private_names_across_modules():
    found = private_imports(PKG)
    assert not found, report(found, 'private names used across modules',
                             'Give the name a public name (and export it), or move the code that needs it into its module.')

def test_no_import_circles():
    found = import_circles(PKG)
    assert not found, report(found, 'import circles',
                             'Move what the lower module needs down a floor (ARCHITECTURE.md); a lazy import is still a circle.')

def test_no_long_modules():
    found = long_modules(PKG)
    assert not found, report(found, f'modules over {MAX_MODULE_LINES} lines', 'Split the module by job, one job per module.')

def test_no_long_functions():
    found = long_functions(PKG)
    assert not found, report(found, f'functions over {MAX_FUNCTION_LINES} lines',
                             'Split the function into named steps (helpers or stages).')
