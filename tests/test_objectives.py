"""The objective slot (issue 19): token tagging (udpos) and language modelling, each checked against a computation of the
test's own (the tokenizer's decoding, transformers' own LM losses, a per-sentence loop), and whole studies on both."""
import json
import numpy as np, pytest, torch
from torch import nn
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast
from test_study import kw
from modtrace.config import OptionError, StudyConfig
from modtrace.data import load_splits
from modtrace.finetune import perplexity, predict
from modtrace.local import train_bpe_tokenizer
from modtrace.model import IGNORE, cross_entropy, load_model, toy_classifier
from modtrace.objectives import LM_LOSS, TAG_LOSS, encode_lm, encode_tags, outcomes, word_starts
from modtrace.sketch import Sketcher, explicit_grads
from modtrace.batching import example_loader
from modtrace.sources import DataError
from modtrace.study import Study, run_study
from modtrace.tasks import task_from_config
torch.set_num_threads(1)

LANGS = ['en', 'de', 'ru', 'ko']

@pytest.fixture(scope='module')
def udpos(shared_data):
    return load_splits('udpos', LANGS, n_train=40, n_dev=10, n_test=20, data=shared_data)

def metaspace_tokenizer(texts, vocab_size=400):
    "A sentencepiece-like BPE (XLM-R's '▁' word marks, offsets that may cover the space), trained here."
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=['<s>', '<pad>', '</s>', '<unk>', '<mask>']))
    tok.post_processor = processors.RobertaProcessing(('</s>', 2), ('<s>', 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>', unk_token='<unk>', pad_token='<pad>',
                                   mask_token='<mask>', model_max_length=128)

@pytest.mark.parametrize('kind', ['byte-level BPE', 'sentencepiece-like'])
def test_each_words_tag_sits_on_its_first_subword_by_the_tokenizers_own_decoding(udpos, kind):
    "On real UD sentences of four scripts: the labelled tokens are, in order, one per word, each decoding to a prefix of its word."
    texts = list(udpos['train']['text'])
    tok = train_bpe_tokenizer(texts, vocab_size=400) if kind == 'byte-level BPE' else metaspace_tokenizer(texts)
    enc = encode_tags(udpos['test'], tok, max_length=512)
    n = 0
    for ids, labels, words, tags in zip(enc['input_ids'], enc['labels'], enc['tokens'], enc['label']):
        at = [j for j, y in enumerate(labels) if y != IGNORE]
        assert [labels[j] for j in at] == tags                                # every word's tag, once, in order
        assert len(at) == len(words)
        ends = at[1:] + [len(ids) - 1]                                       # (the last word ends at </s>)
        for a, b, w in zip(at, ends, words):                                  # a word's tokens, from its first to the next word's
            if tok.unk_token_id in ids[a:b]: continue                         # (a character the tokenizer never saw)
            assert tok.decode(ids[a:b]).replace('▁', ' ').strip() == w        # decode to exactly that word
            n += 1
    assert n > 200

def test_word_starts_skip_a_words_later_subwords_and_special_tokens():
    assert word_starts([(0, 0), (0, 1), (1, 3), (3, 7), (7, 9), (0, 0)], ['cat', 'ran', 'x']) == [None, 0, None, 1, 2, None]
    assert word_starts([(0, 3), (4, 6), (6, 7), (8, 9)], ['cat', 'ran', 'x']) == [0, 1, None, 2]      # offsets without the space

def test_a_truncated_sentence_keeps_the_tags_of_the_words_it_still_holds(udpos):
    tok = train_bpe_tokenizer(list(udpos['train']['text']), vocab_size=400)
    long = udpos['test'].filter(lambda r: len(r['tokens']) > 12).select([0])
    enc = encode_tags(long, tok, max_length=8)
    kept = [y for y in enc['labels'][0] if y != IGNORE]
    assert len(enc['input_ids'][0]) == 8 and 0 < len(kept) < len(long['tokens'][0]) and kept == long['label'][0][:len(kept)]

def test_token_loss_and_accuracy_equal_a_per_sentence_loop(udpos):
    "predict's per-sentence loss (mean over words) and token accuracy, against the first subwords' logits one sentence at a time."
    tok = train_bpe_tokenizer(list(udpos['train']['text']), vocab_size=400)
    model = toy_classifier(vocab=len(tok), num_labels=17, max_positions=130)
    m = load_model_from(model, 'token', 17)
    ds = encode_tags(udpos['test'].select(range(12)), tok, 128)
    got = predict(m, ds, batch_size=5, progress=False)
    for i, row in enumerate(ds):
        ids, y = torch.tensor([row['input_ids']]), torch.tensor(row['labels'])
        logits = m(input_ids=ids).logits[0]                                   # the sentence alone, unpadded
        at = y != IGNORE
        ref = nn.functional.cross_entropy(logits[at], y[at])
        assert got['loss'][i] == pytest.approx(ref.item(), abs=1e-5)
        assert (got['tokens'][i], got['right'][i]) == (int(at.sum()), int((logits[at].argmax(-1) == y[at]).sum()))
    assert got['correct'].all()                                               # a sentence of tags has no single verdict: all kept

_SAVED = {}
def load_model_from(model, head, num_labels=2, tmp=None):
    "Save a toy model and load it back with `head` (a fresh head, as the study does)."
    import tempfile
    key = (id(model), head)
    if key not in _SAVED:
        path = tempfile.mkdtemp(); model.save_pretrained(path); _SAVED[key] = path
    return load_model(_SAVED[key], head, num_labels=num_labels).eval()

def test_per_example_token_gradients_in_one_padded_batch_equal_one_sentence_at_a_time(udpos):
    "TracIn's per-sentence gradient of a token loss: the batched, padded sketcher (exact) against `explicit_grads`' loop."
    tok = train_bpe_tokenizer(list(udpos['train']['text']), vocab_size=400)
    m = load_model_from(toy_classifier(vocab=len(tok), num_labels=17, max_positions=130), 'token', 17)
    ds = encode_tags(udpos['test'].select(range(6)), tok, 128)
    batch = next(iter(example_loader(ds, m.config.pad_token_id, batch_size=6)))
    with Sketcher(m, exact=True) as sk: S, _ = sk(batch)
    X = explicit_grads(m, batch)
    torch.testing.assert_close(S, X, atol=1e-6, rtol=1e-4)

def test_the_causal_lm_loss_is_transformers_own_shifted_loss_per_sentence(tiny_tokenizer):
    "Our labels are shifted once at encoding; transformers' LlamaForCausalLM shifts inside: per sentence, the same loss."
    m = load_model_from(toy_classifier(family='llama', vocab=len(tiny_tokenizer)), 'lm')
    ds = Dataset.from_dict({'id': ['a', 'b', 'c'], 'lang': ['en', 'en', 'fr'], 'text': ['the cat sat on a mat', 'dog ran', 'le chat'],
                            'text_pair': ['', '', '']})
    enc = encode_lm(ds, tiny_tokenizer, causal=True)
    got = predict(m, enc, batch_size=3, progress=False, loss_fn=LM_LOSS)
    for i, ids in enumerate(enc['input_ids']):
        x = torch.tensor([ids])
        assert got['loss'][i] == pytest.approx(m(input_ids=x, labels=x).loss.item(), abs=1e-5)
        assert got['tokens'][i] == len(ids) - 1
    ppl = perplexity(got)
    assert ppl['all'] == pytest.approx(float(np.exp((got['loss'] * got['tokens']).sum() / got['tokens'].sum())))

def test_the_masked_lm_loss_is_transformers_own_and_each_sentence_masks_the_same_tokens_every_time(tiny_tokenizer):
    m = load_model_from(toy_classifier(vocab=len(tiny_tokenizer)), 'lm')
    ds = Dataset.from_dict({'id': [str(i) for i in range(6)], 'lang': ['en'] * 3 + ['fr'] * 3,
                            'text': ['the cat sat on a mat the dog ran fast'] * 3 + ['le chat', 'le chat der hund', 'el perro'],
                            'text_pair': [''] * 6})
    enc = encode_lm(ds, tiny_tokenizer, causal=False, seed=1)
    assert enc['labels'] == encode_lm(ds, tiny_tokenizer, causal=False, seed=1)['labels']        # a fixed draw
    assert enc['labels'] == encode_lm(ds.shuffle(seed=3).sort('id'), tiny_tokenizer, causal=False, seed=1)['labels']
    assert len({tuple(l) for l in enc['labels'][:3]}) > 1                       # same text, other id: its own draw
    assert enc['labels'] != encode_lm(ds, tiny_tokenizer, causal=False, seed=2)['labels']
    got = predict(m, enc, batch_size=6, progress=False, loss_fn=LM_LOSS)
    for i, (ids, y) in enumerate(zip(enc['input_ids'], enc['labels'])):
        assert sum(t == tiny_tokenizer.mask_token_id for t in ids) == sum(v != IGNORE for v in y) >= 1
        ref = m(input_ids=torch.tensor([ids]), labels=torch.tensor([y])).loss
        assert got['loss'][i] == pytest.approx(ref.item(), abs=1e-5)

def test_a_token_task_of_your_own_from_a_config_file(tmp_path):
    for lang, rows in {'aa': [(['x', 'y'], ['N', 'V']), (['y', 'x', 'x'], ['V', 'N', 'N'])],
                       'bb': [(['p'], ['N']), (['q', 'p'], ['V', 'N'])]}.items():
        (tmp_path/'data'/lang).mkdir(parents=True)
        for split in ('train', 'test'):
            (tmp_path/'data'/lang/f'{split}.jsonl').write_text(''.join(
                json.dumps({'id': f'{split}{i}', 'words': w, 'pos': t}) + '\n' for i, (w, t) in enumerate(rows)))
    cfg = dict(name='mytags', data='data', tokens='words', tags='pos', labels=['N', 'V'], parallel=False, lr=1e-4, epochs=1)
    spec = task_from_config(cfg, base=tmp_path)
    assert spec.tags and spec.fields == ('words',) and spec.languages == ('aa', 'bb')
    sp = load_splits(spec, n_train=1, n_dev=1, n_test=2)
    assert sorted(map(tuple, sp['test']['label'])) == [(0,), (0, 1), (1, 0), (1, 0, 0)]
    (tmp_path/'data'/'aa'/'test.jsonl').write_text(json.dumps({'id': 't', 'words': ['x', 'y'], 'pos': ['N']}) + '\n')
    with pytest.raises(DataError, match=r"without a non-empty list of words and one 'pos' tag per word, e\.g\. id t"):
        task_from_config({**cfg, 'name': 'mytags2'}, base=tmp_path)
    with pytest.raises(DataError, match='needs both tokens and tags'):
        task_from_config({k: v for k, v in cfg.items() if k != 'tags'}, base=tmp_path)

def test_an_unknown_objective_is_refused_before_any_work():
    with pytest.raises(OptionError, match='objective must be task'): StudyConfig.make(objective='mlm')

def test_outcomes_tell_the_two_kinds_of_labels_apart():
    assert outcomes(torch.tensor([[0., 1.]]), torch.tensor([1]))['pred'].tolist() == [1]
    o = outcomes(torch.tensor([[[0., 1.], [1., 0.], [0., 1.]]]), torch.tensor([[1, 1, IGNORE]]))
    assert (o['tokens'].tolist(), o['right'].tolist()) == ([2], [1])
    assert cross_entropy(torch.zeros(1, 3, 2), torch.tensor([[0, IGNORE, 1]])).item() == pytest.approx(np.log(2))
    assert TAG_LOSS != LM_LOSS and repr(LM_LOSS) == "TokenLoss('lm')"

def test_a_whole_udpos_study(tmp_path, tiny_folder, shared_data):
    "Tagging end to end on the UD samples: token accuracy in Table 2, every sentence traced, the objective recorded."
    c = {**kw(tiny_folder, shared_data, tmp_path), 'task': 'udpos', 'langs': ['en', 'de', 'ru'], 'scale': 0.005}
    st = run_study(**c, check_estimator=0, layer_groups=False)
    run = tmp_path/'udpos'
    rec = json.loads((run/'study.json').read_text())
    assert rec['settings']['objective'] == 'task'
    full = json.loads((run/rec['stages']['full']/'stage.json').read_text())['key']
    assert full['objective'] == 'tag'
    res = json.loads((run/rec['stages']['full']/'results.json').read_text())
    assert res['metric'] == 'accuracy' and set(res['epochs'][-1]['test']) == {'en', 'de', 'ru', 'all'}
    t2 = st.plot('table2_accuracy')
    assert list(t2.columns) == ['lang', 'full FT', 'full FT + subnetwork', 'SFT', 'random SFT']
    assert (run/'figures'/'fig10_full_positive.csv').exists()
    from modtrace.seeds import conclusions                                    # `modtrace seeds` reads a tagging study too
    row = conclusions(st.results)
    assert 0 <= row['full FT %'] <= 100 and np.isnan(row['health warnings'])

def test_a_whole_language_modelling_study_on_lape_neurons_of_a_decoder(tmp_path, tiny_tokenizer, shared_data):
    "`--unit neurons --select lape --objective lm` on a toy Llama: perplexity in Table 2, causal LM recorded."
    path = tmp_path/'tiny-llama'
    toy_classifier(family='llama', vocab=len(tiny_tokenizer), kv_heads=2).save_pretrained(path); tiny_tokenizer.save_pretrained(path)
    st = run_study(**{**kw(path, shared_data, tmp_path/'out')}, unit='neurons', select='lape', objective='lm', check_estimator=0,
                   layer_groups=False)
    run = tmp_path/'out'/'pawsx'
    rec = json.loads((run/'study.json').read_text())
    assert rec['settings']['objective'] == 'lm'
    assert json.loads((run/rec['stages']['full']/'stage.json').read_text())['key']['objective'] == 'causal-lm'
    t2 = st.plot('table2_accuracy')
    assert list(t2.columns)[1:] == [f'{c} (perplexity)' for c in ('full FT', 'full FT + subnetwork', 'SFT', 'random SFT')]
    assert (t2.iloc[:, 1:] > 1).all().all()                                   # perplexities, not percentages
    assert isinstance(Study.load(run).masks.unit.name, str)
    from modtrace.seeds import conclusions                                    # `modtrace seeds` reads perplexities
    row = conclusions(st.results)
    assert row['full FT perplexity'] > 1 and 'full FT %' not in row
