"The disk-backed sketch store (modtrace.store): round trip, resume, refusals."
import json, shutil
import numpy as np, pytest, torch
from datasets import Dataset
from modtrace.store import SketchStore, StoreError, build_store, sketch_checkpoints, check_compatible
from modtrace.sketch import Sketcher, iter_sketches
from modtrace.finetune import predict
from modtrace.units import random_mask

torch.set_num_threads(1)

def split(n=11, seed=0):
    rng = np.random.default_rng(seed)
    ids = [[0, *rng.integers(3, 60, rng.integers(2, 9)).tolist(), 2] for _ in range(n)]
    return Dataset.from_dict({'id': [f'e{i}' for i in range(n)], 'lang': (['xx', 'yy'] * n)[:n],
                              'label': rng.integers(0, 2, n).tolist(), 'input_ids': ids})

KW = dict(d=16, chunk_size=4, batch_size=3, progress=False)

def test_round_trip_meta_and_values(tiny_model, tmp_path):
    m, ds = tiny_model(), split()
    xi = random_mask(2, 4, 5, seed=0)
    st = build_store(m, ds, tmp_path/'s', checkpoint='ck1', xi=xi, dtype='float32', **KW)
    with Sketcher(m, d=16) as sk: ref = torch.cat([o[1] for o in iter_sketches(sk, ds, xi, progress=False)])
    np.testing.assert_allclose(np.asarray(st.sketches), ref.numpy(), rtol=1e-5, atol=1e-8)
    pr = predict(m, ds, xi=xi, progress=False)
    assert st.meta['id'].tolist() == pr['id'].tolist() and st.meta['lang'].tolist() == pr['lang'].tolist()
    assert st.meta['pred'].tolist() == pr['pred'].tolist()
    np.testing.assert_allclose(st.meta['loss'], pr['loss'], rtol=1e-5)
    assert st.meta['correct'].tolist() == pr['correct'].tolist()
    h = SketchStore(tmp_path/'s').header                                  # opens without the model
    assert (h['d'], h['seed'], h['n'], h['checkpoint'], h['mask']) == (16, 0, 11, {'name': 'ck1'}, xi.tolist())
    f16 = build_store(m, ds, tmp_path/'h', checkpoint='ck1', xi=xi, **KW)
    assert f16.sketches.dtype == np.float16
    np.testing.assert_allclose(f16.rows(0, 11).numpy(), ref.numpy(), rtol=2e-3, atol=1e-6)

def test_killed_run_resumes_to_identical_store(tiny_model, tmp_path):
    m, ds = tiny_model(), split()
    whole = build_store(m, ds, tmp_path/'a', **KW)
    assert build_store(m, ds, tmp_path/'b', stop_after=2, **KW) is None
    assert not (tmp_path/'b'/'complete.json').exists()
    with pytest.raises(StoreError, match='incomplete'): SketchStore(tmp_path/'b')
    # a chunk written to the array but not recorded (killed before progress.json) is simply redone
    prog = json.loads((tmp_path/'b'/'progress.json').read_text()); assert prog['done'] == 8
    resumed = build_store(m, ds, tmp_path/'b', **KW)
    assert np.array_equal(np.asarray(resumed.sketches), np.asarray(whole.sketches))
    assert resumed.meta.equals(whole.meta)
    assert build_store(m, ds, tmp_path/'b', **KW).header == whole.header   # complete: returned, not recomputed

def test_corrupt_chunk_in_partial_store_is_redone(tiny_model, tmp_path):
    m, ds = tiny_model(), split()
    whole = build_store(m, ds, tmp_path/'a', **KW)
    build_store(m, ds, tmp_path/'b', stop_after=2, **KW)
    arr = np.load(tmp_path/'b'/'sketches.npy', mmap_mode='r+'); arr[5, :] = 7; arr.flush(); del arr
    resumed = build_store(m, ds, tmp_path/'b', **KW)
    assert np.array_equal(np.asarray(resumed.sketches), np.asarray(whole.sketches))

def test_truncated_and_corrupt_files(tiny_model, tmp_path):
    m, ds = tiny_model(), split()
    build_store(m, ds, tmp_path/'a', **KW)
    shutil.copytree(tmp_path/'a', tmp_path/'t')
    with open(tmp_path/'t'/'sketches.npy', 'r+b') as f: f.truncate(500)
    with pytest.raises(StoreError, match='truncated'): SketchStore(tmp_path/'t')
    shutil.copytree(tmp_path/'a', tmp_path/'c')
    arr = np.load(tmp_path/'c'/'sketches.npy', mmap_mode='r+'); arr[9, 3] += 1; arr.flush(); del arr
    with pytest.raises(StoreError, match='checksum'): SketchStore(tmp_path/'c')
    SketchStore(tmp_path/'c', verify=False)                             # opt-out of the full read
    with pytest.raises(StoreError, match='not a sketch store'): SketchStore(tmp_path/'nothing')

def test_refuses_a_different_run_in_the_same_folder(tiny_model, tmp_path):
    m, ds = tiny_model(), split()
    build_store(m, ds, tmp_path/'a', stop_after=1, **KW)
    with pytest.raises(StoreError, match='different sketch run'): build_store(m, ds, tmp_path/'a', **{**KW, 'seed': 1})
    build_store(m, ds, tmp_path/'a', **KW)
    with pytest.raises(StoreError, match='different seed'): build_store(m, ds, tmp_path/'a', **{**KW, 'seed': 1})
    with pytest.raises(StoreError, match='float16 or float32'): build_store(m, ds, tmp_path/'x', dtype='int8', **KW)

def test_check_compatible_names_the_field():
    h = {'model': 'a', 'layers': ['x'], 'sizes': [4], 'd': 4, 'seed': 0, 'exact': False, 'checkpoint': {'epoch': 1}, 'mask': None}
    for f, v in [('model', 'b'), ('layers', ['y']), ('d', 16), ('seed', 2), ('exact', True)]:
        with pytest.raises(StoreError, match=f'different {f}'): check_compatible(h, {**h, f: v})
    with pytest.raises(StoreError, match='different checkpoint'): check_compatible(h, {**h, 'checkpoint': {'epoch': 2}}, same=('checkpoint',))
    check_compatible(h, {**h, 'checkpoint': {'epoch': 2}})

def test_sketch_checkpoints_of_a_run(tiny_model, tmp_path):
    ds = split(6)
    for e in (1, 2):
        tiny_model(seed=e).save_pretrained(tmp_path/'run'/f'epoch-{e}')
        (tmp_path/'run'/f'epoch-{e}'/'state.json').write_text(json.dumps({'epoch': e, 'lr': 2e-5}))
    stores = sketch_checkpoints(tiny_model(), ds, [tmp_path/'run'/f'epoch-{e}' for e in (1, 2)], tmp_path/'sk', **KW)
    assert [s.header['checkpoint']['epoch'] for s in stores] == [1, 2]
    assert [s.path.name for s in stores] == ['epoch-1', 'epoch-2']
    direct = build_store(tiny_model(seed=2), ds, tmp_path/'direct', checkpoint=tmp_path/'run'/'epoch-2', **KW)
    assert np.array_equal(np.asarray(direct.sketches), np.asarray(stores[1].sketches))

WORKER = r'''
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from conftest import make_tiny_model
from test_store import split, KW
from modtrace.store import build_part
build_part(make_tiny_model(), split(), {path!r}, part=int(sys.argv[1]), n_parts=2, checkpoint='ck', **KW)
'''

def test_two_processes_give_the_same_store_as_one(tiny_model, tmp_path):
    import subprocess, sys
    from pathlib import Path
    from modtrace.store import merge_parts
    code = WORKER.format(tests=str(Path(__file__).parent), path=str(tmp_path/'par'))
    procs = [subprocess.Popen([sys.executable, '-c', code, str(i)], stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for p in procs: assert p.wait() == 0, p.stderr.read()
    with pytest.raises(StoreError, match='missing or incomplete'): merge_parts(tmp_path/'par', 3)
    merged = merge_parts(tmp_path/'par', 2)
    one = build_store(tiny_model(), split(), tmp_path/'one', checkpoint='ck', **KW)
    assert np.array_equal(np.asarray(merged.sketches), np.asarray(one.sketches))
    assert merged.header == one.header and merged.meta.equals(one.meta)
    assert not list((tmp_path/'par').glob('part-*'))                      # parts removed after the merge

def test_a_pool_of_local_workers_writes_the_store_one_process_writes(tiny_model, tmp_path):
    "LocalPool: spawned workers sketch their shares of every checkpoint's store; merged, byte for byte the single process's."
    from modtrace.pool import LocalPool
    ds = split(13)
    for e in (1, 2):
        tiny_model(seed=e).save_pretrained(tmp_path/'run'/f'epoch-{e}')
        (tmp_path/'run'/f'epoch-{e}'/'state.json').write_text(json.dumps({'epoch': e, 'lr': 2e-5}))
    cks = [tmp_path/'run'/f'epoch-{e}' for e in (1, 2)]
    with LocalPool(tiny_model(), n=3) as pool:
        pooled = sketch_checkpoints(tiny_model(), ds, cks, tmp_path/'pool', pool=pool, **KW)
        assert len(pool.ex._processes) == 2                                # two workers really ran beside the caller
    alone = sketch_checkpoints(tiny_model(), ds, cks, tmp_path/'alone', **KW)
    for a, b in zip(pooled, alone):
        assert np.array_equal(np.asarray(a.sketches), np.asarray(b.sketches)) and a.header == b.header and a.meta.equals(b.meta)
    assert not list((tmp_path/'pool').rglob('part-*'))                     # the shares were merged and removed
    with pytest.raises(StoreError, match='in a `with` block'): LocalPool(tiny_model(), n=2).build(tiny_model(), ds, tmp_path/'x', cks[0])

def test_a_worker_loading_other_weights_leaves_the_callers_model_alone(tiny_model, tmp_path):
    "The workers get their own copy of the model (not tensors in shared memory): loading θ_e there changes nothing here."
    from modtrace.pool import LocalPool
    from modtrace.model import load_checkpoint
    tiny_model(seed=2).save_pretrained(tmp_path/'e2')
    mine = tiny_model(seed=0)
    with LocalPool(mine, n=2) as pool: pool.submit(load_checkpoint, tmp_path/'e2', with_model=True).result()
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), tiny_model(seed=0).state_dict().values()))

def test_exact_stores_are_float32_and_float16_is_refused(tiny_model, tmp_path):
    "Exact TracIn stored as float16 was off by ~1e-4 unless the user knew to pass dtype='float32'."
    m, ds = tiny_model(), split(4)
    st = build_store(m, ds, tmp_path/'e', exact=True, layers='classifier', progress=False)
    assert st.sketches.dtype == np.float32 and st.header['dtype'] == 'float32'
    with Sketcher(m, exact=True, layers='classifier') as ex: ref = torch.cat([o[1] for o in iter_sketches(ex, ds, progress=False)])
    assert torch.equal(st.rows(0, 4), ref)                                   # exactly what was computed
    with pytest.raises(StoreError, match='Exact gradients are stored as float32'):
        build_store(m, ds, tmp_path/'f', exact=True, layers='classifier', dtype='float16', progress=False)
    assert not (tmp_path/'f').exists()

def test_a_checkpoint_is_one_checkpoint_whatever_the_path_spelling(tiny_model, tmp_path, monkeypatch):
    "Relative and absolute spellings of one checkpoint, and a run folder moved elsewhere, give equal headers."
    from modtrace.store import checkpoint_info
    ck = tmp_path/'run'/'full-x'/'epoch-1'
    tiny_model().save_pretrained(ck); (ck/'state.json').write_text(json.dumps({'epoch': 1, 'lr': 1e-3}))
    monkeypatch.chdir(tmp_path)
    assert checkpoint_info('run/full-x/epoch-1') == checkpoint_info(ck)                  # resolved once, in one place
    a = checkpoint_info(ck, root=tmp_path/'run')
    shutil.copytree(tmp_path/'run', tmp_path/'moved')
    assert a == checkpoint_info(tmp_path/'moved'/'full-x'/'epoch-1', root=tmp_path/'moved') == \
        {'path': 'full-x/epoch-1', 'epoch': 1, 'lr': 1e-3}
