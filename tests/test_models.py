"""The adapter table: for each architecture, its parts are the model's own and `mlm_logits` is its head.

One test per entry (a tiny random model of that class, so any architecture can be checked without
weights), plus real weights where they ship (rxnfp: a trained BERT MLM head). Adding an architecture =
one entry in distilx/models/adapters.py and one case here.
"""

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, BertModel, DistilBertConfig, DistilBertForMaskedLM,
                          RobertaConfig, RobertaForMaskedLM, XLMRobertaConfig, XLMRobertaForMaskedLM)

from distilx.models import ADAPTERS, adapter_for, adapter_for_type, init_student, load_teacher

SMALL = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=64)
TINY_MODELS = {
    "bert": lambda: BertForMaskedLM(BertConfig(**SMALL)),
    "roberta": lambda: RobertaForMaskedLM(RobertaConfig(**SMALL, pad_token_id=1)),
    "xlm-roberta": lambda: XLMRobertaForMaskedLM(XLMRobertaConfig(**SMALL, pad_token_id=1)),
    "distilbert": lambda: DistilBertForMaskedLM(DistilBertConfig(vocab_size=120, dim=32, n_layers=3, n_heads=2,
                                                                 hidden_dim=48, max_position_embeddings=64)),
}


def batch(vocab=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    return ids, mask


def check_adapter(model, name):
    adapter = adapter_for(model.eval())
    assert adapter.name == name
    ids, mask = batch(model.config.vocab_size)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = adapter.last_hidden(model, ids, mask)
        logits = adapter.mlm_logits(model, hidden)
        projection_input = adapter.head_transform(model, hidden)
    assert torch.equal(hidden, full.hidden_states[-1])
    assert torch.equal(logits, full.logits)  # the same ops as the model's own head, bit for bit
    weight, bias = adapter.decoder(model)
    assert weight is model.get_output_embeddings().weight and weight.shape == (model.config.vocab_size, hidden.shape[-1])
    assert bias is not None and bias.shape == (model.config.vocab_size,)
    assert torch.allclose(projection_input @ weight.T + bias, full.logits, atol=1e-5)
    assert isinstance(adapter.layers(model), torch.nn.ModuleList)
    assert len(adapter.layers(model)) == model.config.num_hidden_layers  # DistilBERT maps it to n_layers
    assert adapter.embeddings(model).word_embeddings is model.get_input_embeddings()
    # rows: the head applied to chosen rows only equals the full logits of those rows
    rows = mask.bool()
    with torch.no_grad():
        assert torch.equal(adapter.mlm_logits(model, hidden[rows]), full.logits[rows])


@pytest.mark.parametrize("model_type", sorted(TINY_MODELS))
def test_each_entry_reaches_the_models_own_parts(model_type):
    torch.manual_seed(0)
    model = TINY_MODELS[model_type]()
    check_adapter(model, adapter_for_type(model_type).name)


def test_every_entry_is_tested():
    assert {t for a in ADAPTERS for t in a.model_types} - set(TINY_MODELS) <= {"camembert"}  # RoBERTa's classes


def test_real_bert_head(rxnfp_dir):
    check_adapter(load_teacher(rxnfp_dir), "bert")  # trained MLM head, config.json without model_type


def test_xlm_roberta_folder_loads_as_its_own_class_and_shrinks(tmp_path):
    torch.manual_seed(0)
    TINY_MODELS["xlm-roberta"]().save_pretrained(tmp_path)
    teacher = load_teacher(tmp_path)
    assert type(teacher) is XLMRobertaForMaskedLM
    student = init_student(teacher, layers=[0, 2])
    assert type(student) is XLMRobertaForMaskedLM and student.config.num_hidden_layers == 2
    assert torch.equal(student.roberta.encoder.layer[1].attention.self.query.weight,
                       teacher.roberta.encoder.layer[2].attention.self.query.weight)
    full = init_student(teacher, n_layers=3).eval()
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(full(input_ids=ids, attention_mask=mask).logits,
                           teacher(input_ids=ids, attention_mask=mask).logits)


def test_unsupported_models_are_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="BertForMaskedLM or RobertaForMaskedLM"):
        adapter_for(BertModel(BertConfig(**SMALL)))  # an encoder without an MLM head
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'.*'bert'"):
        adapter_for_type("gpt2")
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="unsupported model_type 't5' in .*config.json"):
        load_teacher(tmp_path)
