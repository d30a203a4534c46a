"Issue 20: a cut-short model.safetensors and a --model folder that does not exist are one clear ModelError each."
import pytest
from modtrace.model import ModelError, load_checkpoint, load_classifier, load_tokenizer, toy_classifier

@pytest.fixture
def cut_short(tmp_path, tiny_tokenizer):
    d = tmp_path/'epoch-1'
    toy_classifier(vocab=len(tiny_tokenizer)).save_pretrained(d); tiny_tokenizer.save_pretrained(d)
    f = d/'model.safetensors'; f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])   # a write that stopped halfway
    return d

def test_a_truncated_checkpoint_is_one_model_error_naming_the_file(cut_short):
    for load in (lambda: load_checkpoint(toy_classifier(), cut_short), lambda: load_classifier(cut_short)):
        with pytest.raises(ModelError) as e: load()
        msg = str(e.value)
        assert str(cut_short/'model.safetensors') in msg and 'delete' in msg.lower() and 'rerun' in msg, msg
        assert e.value.__cause__ is None or not isinstance(e.value.__cause__, ModelError)

@pytest.mark.parametrize('name', ['./no-such-model', '/nonexistent/models/xlmr', '~/no-such-model-folder', 'models/sub/xlmr'])
def test_a_model_path_that_does_not_exist_says_so(name):
    for load in (load_tokenizer, load_classifier):
        with pytest.raises(ModelError) as e: load(name)
        assert 'no such folder' in str(e.value) and 'owner/name' in str(e.value) and 'Repo id' not in str(e.value), str(e.value)

def test_a_hub_name_is_still_looked_up_on_the_hub():
    with pytest.raises(ModelError) as e: load_classifier('nobody-here/no-such-model')   # offline in the tests: the hub's error
    assert 'no such folder' not in str(e.value) and 'Could not load' in str(e.value)
