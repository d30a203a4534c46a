"The model loader and the head gate (SPEC section 2)."
import copy
import pytest, torch
from torch import nn
from conftest import make_tiny_model
from modtrace.model import ModelError, load_classifier, load_tokenizer, encoder_layers, model_shape
from modtrace.units import head_gate, mask_from, head_param_masks, shuffle_mask, random_mask

X = torch.randint(3, 60, (4, 9))
Y = torch.tensor([0, 1, 1, 0])
AM = torch.ones_like(X); AM[1, 6:] = 0; AM[3, 4:] = 0   # padded examples in the batch

def hooks_left(m): return sum(len(l.attention.output.dense._forward_pre_hooks) for l in encoder_layers(m))

@pytest.mark.parametrize('attn', ['eager', 'sdpa'])
def test_all_ones_changes_nothing_exactly(attn):
    m = make_tiny_model(attn)
    with torch.no_grad():
        base = m(input_ids=X, attention_mask=AM).logits
        with head_gate(m, torch.ones(2, 4)): gated = m(input_ids=X, attention_mask=AM).logits
        with head_gate(m, torch.ones(4, 2, 4)): per_ex = m(input_ids=X, attention_mask=AM).logits
    assert torch.equal(base, gated) and torch.equal(base, per_ex)
    assert hooks_left(m) == 0

@pytest.mark.parametrize('attn', ['eager', 'sdpa'])
@pytest.mark.parametrize('layer,head', [(0, 0), (1, 3)])
def test_disabled_head_equals_zeroed_output_columns(attn, layer, head):
    m = make_tiny_model(attn); m2 = copy.deepcopy(m); dh = 16 // 4
    with torch.no_grad():
        m2.roberta.encoder.layer[layer].attention.output.dense.weight[:, head*dh:(head+1)*dh] = 0
        with head_gate(m, mask_from([(layer, head)], (2, 4))): gated = m(input_ids=X, attention_mask=AM).logits
        ref = m2(input_ids=X, attention_mask=AM).logits
    torch.testing.assert_close(gated, ref, atol=1e-6, rtol=0)
    assert not torch.allclose(gated, m(input_ids=X, attention_mask=AM).logits)  # the head mattered

def test_eager_and_sdpa_agree_under_a_mask():
    xi = mask_from([(0, 1), (1, 2)], (2, 4))
    outs = []
    for attn in ('eager', 'sdpa'):
        m = make_tiny_model(attn)
        with torch.no_grad(), head_gate(m, xi): outs.append(m(input_ids=X, attention_mask=AM).logits)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)

def test_per_example_mask_equals_one_example_at_a_time():
    m = make_tiny_model('sdpa')
    xis = torch.stack([mask_from([(b % 2, b)], (2, 4)) for b in range(4)])     # (B, L, H)
    with torch.no_grad():
        with head_gate(m, xis): batched = m(input_ids=X, attention_mask=AM).logits
        for b in range(4):
            with head_gate(m, xis[b]): one = m(input_ids=X[b:b+1], attention_mask=AM[b:b+1]).logits
            torch.testing.assert_close(batched[b:b+1], one, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('per_example', [False, True])
def test_mask_gradient_matches_finite_differences(per_example):
    m = make_tiny_model('eager', dtype=torch.float64)
    shape = (4, 2, 4) if per_example else (2, 4)
    def loss(xi):
        with head_gate(m, xi): return nn.functional.cross_entropy(m(input_ids=X, attention_mask=AM).logits, Y, reduction='sum')
    xi = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    loss(xi).backward()
    fd, eps = torch.zeros(shape, dtype=torch.float64), 1e-6
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape]):
        e = torch.zeros(shape, dtype=torch.float64); e[tuple(idx)] = eps
        fd[tuple(idx)] = (loss(xi.detach() + e) - loss(xi.detach() - e)) / (2 * eps)
    torch.testing.assert_close(xi.grad, fd, atol=1e-6, rtol=1e-5)

def test_gate_mask_can_change_between_batches():
    m = make_tiny_model('sdpa')
    with torch.no_grad(), head_gate(m, torch.ones(2, 4)) as g:
        a = m(input_ids=X).logits
        g.xi = torch.zeros(2, 4)
        b = m(input_ids=X).logits
    assert not torch.allclose(a, b)

def test_hooks_removed_on_error():
    m = make_tiny_model()
    with pytest.raises(ModelError, match='3 rows but the batch has 4'):
        with head_gate(m, torch.ones(3, 2, 4)): m(input_ids=X)
    assert hooks_left(m) == 0

@pytest.mark.parametrize('bad', [torch.ones(4, 2), torch.ones(2, 5), torch.ones(8), torch.ones(1, 1, 2, 4)])
def test_bad_mask_shape_is_one_clear_error(bad):
    with pytest.raises(ModelError, match=r'\(layers, heads\) = \(2, 4\)'): head_gate(make_tiny_model(), bad)

def test_head_param_masks_cover_exactly_the_disabled_heads():
    m = make_tiny_model(); dh = 4
    pm = head_param_masks(m, mask_from([(0, 1), (0, 3)], (2, 4)))
    assert all('layer.0.' in k for k in pm) and len(pm) == 7
    q = pm['roberta.encoder.layer.0.attention.self.query.weight']
    assert q.shape == (16, 16) and q[dh:2*dh].all() and q[3*dh:].all() and not q[:dh].any() and not q[2*dh:3*dh].any()
    o = pm['roberta.encoder.layer.0.attention.output.dense.weight']
    assert o[:, dh:2*dh].all() and not o[:, :dh].any()
    assert head_param_masks(m, torch.ones(2, 4)) == {}

def test_random_masks_keep_size_and_are_seeded():
    xi = mask_from([(0, 0), (1, 1), (1, 2)], (2, 4))
    for s in (0, 1, 2): assert shuffle_mask(xi, s).sum() == 5 and shuffle_mask(xi, s).shape == (2, 4)
    assert not all(torch.equal(shuffle_mask(xi, 0), shuffle_mask(xi, s)) for s in (1, 2))
    assert torch.equal(random_mask(2, 4, 3, seed=7), random_mask(2, 4, 3, seed=7))
    with pytest.raises(ModelError, match='between 1 and 8'): random_mask(2, 4, 0)

def test_unsupported_model_is_one_clear_error_naming_the_supported_families():
    with pytest.raises(ModelError, match=r'Linear \(config.model_type=None\) is not a supported model family\. '
                                         r'Supported: XLM-R / RoBERTa \(xlm-roberta, roberta\); BERT / mBERT \(bert\)'):
        model_shape(nn.Linear(2, 2))

def test_local_folder_loads_and_missing_model_says_what_to_do(tmp_path, tiny_tokenizer):
    m = make_tiny_model(); m.save_pretrained(tmp_path); tiny_tokenizer.save_pretrained(tmp_path)
    c = load_classifier(tmp_path, attn_implementation='eager')
    assert model_shape(c) == (2, 4) and c.config._attn_implementation == 'eager'
    assert load_tokenizer(tmp_path)('the cat')['input_ids'][0] == tiny_tokenizer.bos_token_id
    with pytest.raises(ModelError, match='no such folder'): load_classifier(tmp_path/'nowhere')     # a path: not looked up on the hub
    with pytest.raises(ModelError, match='pass the folder'): load_classifier('no-such-org/no-such-model')

def test_mask_file_round_trip_and_bad_files(tmp_path):
    import json
    from modtrace.units import save_masks, load_masks
    m = make_tiny_model()
    masks = {'en': random_mask(2, 4, 5, seed=0), 'ko': random_mask(2, 4, 3, seed=1)}
    p = save_masks(tmp_path/'m.json', masks, model='tiny')
    doc = json.loads(p.read_text())                       # readable without modtrace
    assert doc['n_layers'] == 2 and doc['n_heads'] == 4 and doc['model'] == 'tiny'
    back = load_masks(p, m)
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    with pytest.raises(ModelError, match=r'\(layers, heads\) = \(2, 4\), but this model has \(3, 4\)'):
        load_masks(p, make_tiny_model(layers=3))
    (tmp_path/'empty.json').write_text(json.dumps({'n_layers': 2, 'n_heads': 4, 'masks': {'en': [[0]*4]*2}}))
    with pytest.raises(ModelError, match="'en' enables no head"): load_masks(tmp_path/'empty.json')
    (tmp_path/'junk.json').write_text('{"a": 1}')
    with pytest.raises(ModelError, match='not a modtrace mask file'): load_masks(tmp_path/'junk.json')
    with pytest.raises(ModelError, match='Cannot read'): load_masks(tmp_path/'missing.json')
    with pytest.raises(ModelError, match=r'one \(layers, heads\) shape'): save_masks(tmp_path/'x.json', {'a': torch.ones(2, 4), 'b': torch.ones(3, 4)})

def test_tokenizer_pads_right_and_a_folder_without_one_is_refused(tmp_path, tiny_tokenizer):
    from modtrace.model import check_padding
    m = make_tiny_model(); m.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match='holds no tokenizer'): load_tokenizer(tmp_path)   # transformers would build an empty one
    left = copy.deepcopy(tiny_tokenizer); left.padding_side = 'left'; left.save_pretrained(tmp_path)   # a session fixture: copy
    tok = load_tokenizer(tmp_path)
    assert tok.padding_side == 'right' and tok.pad_token_id == m.config.pad_token_id
    check_padding(m, tok)
    tok.padding_side = 'left'
    with pytest.raises(ModelError, match='pads on the left'): check_padding(m, tok)

def test_unsupported_architecture_is_refused_before_its_weights_load(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10)).save_pretrained(tmp_path)
    (tmp_path/'model.safetensors').write_bytes(b'not weights')          # never read: the config is checked first
    with pytest.raises(ModelError, match=r"model_type='gpt2'\) is not a supported model family\. Supported: .*BLOOM \(bloom\)"):
        load_classifier(tmp_path)
