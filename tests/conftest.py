"Shared fixtures: offline hub, the real data samples, tiny random-init models and a locally trained tokenizer."
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
from pathlib import Path
import pytest, torch
torch.set_num_threads(1)  # tiny models: threads cost more than they bring (and CI runs tests side by side)
from modtrace.model import toy_classifier

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('MODTRACE_SHARED_DATA', ROOT.parent/'shared'/'data'))

@pytest.fixture(scope='session')
def shared_data():
    "The real XNLI / PAWS-X / MARC samples (read in place, never copied into the project)."
    if not (SHARED_DATA/'README.md').exists():
        pytest.fail(f"The real data samples are missing: expected them at {SHARED_DATA} "
                    "(set MODTRACE_SHARED_DATA to their folder).")
    return SHARED_DATA

def make_tiny_model(attn='eager', seed=0, layers=2, heads=4, hidden=16, vocab=60, dtype=torch.float32):
    "A random-init XLM-R classifier small enough for exact checks: modtrace's one toy model."
    return toy_classifier(layers=layers, heads=heads, hidden=hidden, vocab=vocab, seed=seed, attn=attn, dtype=dtype)

@pytest.fixture
def tiny_model(): return make_tiny_model

@pytest.fixture(scope='session')
def tiny_tokenizer(tmp_path_factory):
    "A word-level tokenizer trained here with `tokenizers`, saved and reloaded as a HF tokenizer."
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    special = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']
    tok = Tokenizer(models.WordLevel(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    words = 'the cat sat on a mat dog ran fast le chat der hund el perro 猫 狗 고양이 кошка'.split()
    tok.train_from_iterator([' '.join(words)] * 3, trainers.WordLevelTrainer(special_tokens=special))
    tok.post_processor = processors.RobertaProcessing(('</s>', tok.token_to_id('</s>')), ('<s>', tok.token_to_id('<s>')))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
                                   pad_token='<pad>', mask_token='<mask>', cls_token='<s>', sep_token='</s>',
                                   model_max_length=64)
    path = tmp_path_factory.mktemp('tok')
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)

@pytest.fixture(scope='session')
def tiny_folder(tmp_path_factory, tiny_tokenizer):
    "A tiny XLM-R with the tokenizer above, saved as a model folder (what `--model DIR` takes)."
    m = make_tiny_model(attn='sdpa', vocab=len(tiny_tokenizer))
    path = tmp_path_factory.mktemp('model')/'tiny-xlmr'; m.save_pretrained(path); tiny_tokenizer.save_pretrained(path)
    return path
