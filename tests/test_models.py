"""The adapter table: for each architecture, its parts are the model's own and `mlm_logits` is its head.

One test per entry (a tiny random model of that class, so any architecture can be checked without
weights; tests/tiny_models.py), plus real weights where they ship (rxnfp: a trained BERT MLM head), the
generic adapter on model types outside the table, and the clear errors. Adding an architecture = one
entry in distilx/models/adapters.py and one case in tests/tiny_models.py.
"""

import functools

import pytest
import torch
from transformers import (AlbertConfig, AlbertForMaskedLM, BertConfig, BertForSequenceClassification, BertModel,
                          ElectraConfig, ElectraForPreTraining, FunnelConfig, FunnelForMaskedLM, GPT2Config,
                          GPT2LMHeadModel, XLMConfig, XLMWithLMHeadModel, XLMRobertaForMaskedLM)

from distilx import Tokenizer
from distilx.models import (ADAPTERS, UnsupportedModelError, adapter_for, adapter_for_type, check_vocab, init_student,
                            load_teacher)
from tiny_models import AVAILABLE, CLS, MASK, SEP, tiny_teacher

SMALL = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=64)
TINY_MODELS = {name: functools.partial(tiny_teacher, name) for name in AVAILABLE}
GENERIC = {"mpnet", "roformer"}  # served by the generic adapter, not a table entry


def batch(vocab=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    return ids, mask


def projection_weight(model):
    """The vocabulary projection's weight as transformers lays it out (DeBERTa-v2's new head multiplies by
    the word embeddings directly; its get_output_embeddings() is the head's dense layer)."""
    if model.config.model_type == "deberta-v2" and not model.config.legacy:
        return model.deberta.embeddings.word_embeddings.weight
    return model.get_output_embeddings().weight


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
    assert weight is projection_weight(model) and weight.shape == (model.config.vocab_size, projection_input.shape[-1])
    has_bias = not (model.config.model_type == "eurobert" and not model.config.mlp_bias)
    assert (bias is not None) == has_bias and (bias is None or bias.shape == (model.config.vocab_size,))
    assert torch.allclose(projection_input @ weight.T + (bias if bias is not None else 0), full.logits, atol=1e-5)
    assert isinstance(adapter.layers(model), torch.nn.ModuleList)
    assert len(adapter.layers(model)) == model.config.num_hidden_layers  # DistilBERT maps it to n_layers
    assert any(m is model.get_input_embeddings() for m in adapter.embeddings(model).modules())
    # the encoder is reached through the base model: the same entry serves the bare encoder (and other heads)
    assert adapter.layers(model.base_model) is adapter.layers(model)
    # rows: the head applied to chosen rows only equals the full logits of those rows
    rows = mask.bool()
    rows[0, ::3] = False
    with torch.no_grad():
        assert torch.equal(adapter.mlm_logits(model, hidden[rows]), full.logits[rows])


@pytest.mark.parametrize("model_type", sorted(TINY_MODELS))
def test_each_entry_reaches_the_models_own_parts(model_type):
    model = TINY_MODELS[model_type]()
    expected = model.config.model_type if model_type in GENERIC else adapter_for_type(model.config.model_type).name
    check_adapter(model, expected)


def test_every_entry_is_tested():
    tested = {TINY_MODELS[name]().config.model_type for name in TINY_MODELS}
    assert {t for a in ADAPTERS for t in a.model_types} - tested <= {"eurobert"} - set(AVAILABLE)
    assert GENERIC <= tested and not GENERIC & {t for a in ADAPTERS for t in a.model_types}


def test_real_bert_head(rxnfp_dir):
    check_adapter(load_teacher(rxnfp_dir), "bert")  # trained MLM head, config.json without model_type


def test_sparse_prediction_does_not_change_the_rows_read():
    # ModernBERT's own head can drop unlabelled rows (sparse_prediction); the adapter never passes labels
    model = tiny_teacher("modernbert", sparse_prediction=True)
    check_adapter(model, "modernbert")


def test_xlm_roberta_folder_loads_as_its_own_class_and_shrinks(tmp_path):
    TINY_MODELS["xlm-roberta"]().save_pretrained(tmp_path)
    teacher = load_teacher(tmp_path)
    assert type(teacher) is XLMRobertaForMaskedLM
    student = init_student(teacher, layers=[0, 2])
    assert type(student) is XLMRobertaForMaskedLM and student.config.num_hidden_layers == 2
    assert torch.equal(student.roberta.encoder.layer[1].attention.self.query.weight,
                       teacher.roberta.encoder.layer[2].attention.self.query.weight)
    full = init_student(teacher, n_layers=4).eval()
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(full(input_ids=ids, attention_mask=mask).logits,
                           teacher(input_ids=ids, attention_mask=mask).logits)


def test_unsupported_models_are_clear_errors(tmp_path):
    listed = r"model types \['bert', 'camembert', 'deberta-v2', 'distilbert', 'electra', 'eurobert', 'modernbert'"
    with pytest.raises(TypeError, match="BertModel has no masked-LM head.*" + listed):
        adapter_for(BertModel(BertConfig(**SMALL)))  # an encoder without an MLM head
    with pytest.raises(TypeError, match="BertForSequenceClassification has no masked-LM head"):
        adapter_for(BertForSequenceClassification(BertConfig(**SMALL)))
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'.*'bert'"):
        adapter_for_type("gpt2")
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="unsupported model_type 't5' in .*config.json.*no masked-LM class"):
        load_teacher(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert-of-the-future"}')
    with pytest.raises(ValueError, match="'bert-of-the-future' .* transformers .* does not know it"):
        load_teacher(tmp_path)


@pytest.mark.parametrize("model, why", [
    (lambda: AlbertForMaskedLM(AlbertConfig(**SMALL, embedding_size=16)), "no nn.ModuleList of num_hidden_layers=3"),
    (lambda: FunnelForMaskedLM(FunnelConfig(vocab_size=120, block_sizes=[1, 1], d_model=32, n_head=2, d_head=16,
                                            d_inner=48)), "nn.ModuleList of num_hidden_layers"),
    (lambda: XLMWithLMHeadModel(XLMConfig(vocab_size=120, emb_dim=32, n_layers=3, n_heads=2)),
     r"4 \(attentions, layer_norm1, ffns, layer_norm2\)"),
    (lambda: GPT2LMHeadModel(GPT2Config(vocab_size=120, n_embd=32, n_layer=3, n_head=2)),
     "not the masked-LM class"),
])
def test_the_generic_adapter_refuses_what_it_cannot_serve(model, why):
    with pytest.raises(UnsupportedModelError, match=f"unsupported model .*{why}.*model types"):
        adapter_for(model())


def test_the_generic_adapter_checks_the_head_against_the_models_logits():
    model = tiny_teacher("mpnet")
    check_adapter(model, "mpnet")
    # a head that adds an output-only bias after its projection (as DeBERTa-v2's new head does): the split
    # into transform + projection misses it, and the check against the model's own logits sees it
    model = tiny_teacher("mpnet")
    projection_then_bias = model.lm_head.forward
    model.lm_head.forward = lambda features: projection_then_bias(features) + 0.5
    with pytest.raises(UnsupportedModelError, match="does not reproduce the model's logits"):
        adapter_for(model)


@pytest.mark.parametrize("holder, what", [
    (lambda: BertForSequenceClassification(BertConfig(**SMALL)), "BertForSequenceClassification, whose head is not"),
    (lambda: BertModel(BertConfig(**SMALL)), "BertModel, a bare encoder"),
    (lambda: ElectraForPreTraining(ElectraConfig(**SMALL)), "ElectraForPreTraining, whose head is not"),
])
def test_a_folder_without_a_masked_lm_head_says_what_is_needed(holder, what, tmp_path):
    holder().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"no trained masked-LM head .*{what}.*A teacher must be a masked-LM "
                                         r"model: a folder saved from a …ForMaskedLM"):
        load_teacher(tmp_path)
    with pytest.warns(UserWarning, match="no trained masked-LM head"):
        assert load_teacher(tmp_path, require_mlm_head=False).get_output_embeddings() is not None


@pytest.fixture(scope="module")
def bert_tokenizer(tokenizer_json):
    return Tokenizer(str(tokenizer_json))  # [PAD] 0, [CLS] 101, [SEP] 102, [MASK] 103


@pytest.mark.parametrize("name, config, message", [
    ("roberta", dict(pad_token_id=1), "pad token is id 0, but the teacher's config declares pad_token_id=1"),
    ("eurobert", dict(mask_token_id=4), "mask token is id 103, but .* mask_token_id=4"),
    ("roberta", dict(bos_token_id=0), "cls token is id 101, but .* bos_token_id=0"),
    ("modernbert", dict(sep_token_id=50), "sep token is id 102, but .* sep_token_id=50"),
    ("eurobert", dict(eos_token_id=[7, 8]), r"sep token is id 102, but .* eos_token_id=\[7, 8\]"),
])
def test_tokenizer_ids_against_the_configs_declared_ids(name, config, message, bert_tokenizer):
    if name not in AVAILABLE:
        pytest.skip(f"transformers has no {name}")
    check_vocab(tiny_teacher(name), bert_tokenizer)  # the declarations of tests/tiny_models.py match
    with pytest.raises(ValueError, match=message + ".*pass the teacher's own tokenizer"):
        check_vocab(tiny_teacher(name, **config), bert_tokenizer)


def test_a_declared_list_of_ids_may_hold_the_tokenizers(bert_tokenizer):
    check_vocab(tiny_teacher("roberta", eos_token_id=[SEP, 7]), bert_tokenizer)
    assert (CLS, SEP, MASK) == (bert_tokenizer.cls_id, bert_tokenizer.sep_id, bert_tokenizer.mask_id)


def test_a_tokenizer_of_another_model_is_refused(sample_tokenizers, bert_tokenizer):
    roberta_bpe = Tokenizer(str(sample_tokenizers["roberta"]))  # <s> 0, <pad> 1, </s> 2, <mask> last
    check_vocab(tiny_teacher("roberta", tokenizer=roberta_bpe), roberta_bpe)
    with pytest.raises(ValueError, match="pad token is id 1, but the teacher's config declares pad_token_id=0"):
        check_vocab(tiny_teacher("roberta"), roberta_bpe)  # a 30522-id model declaring BERT's ids
    with pytest.raises(ValueError, match=r"tokenizer vocabulary \(30522 ids\) is larger than the teacher's \(4000"):
        check_vocab(tiny_teacher("roberta", tokenizer=roberta_bpe), bert_tokenizer)
