"""init_student: the teacher -> student weight mapping, proven on real weights and real text."""

import warnings

import numpy as np
import pytest
import torch
from transformers import (AutoModelForMaskedLM, BertConfig, BertForMaskedLM, DistilBertForMaskedLM,
                          RobertaConfig, RobertaForMaskedLM)

from distilx.models import check_vocab, init_student, load_teacher, student_layer_indices
from pipeline_helpers import english_batch, max_logit_diff


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    torch.manual_seed(0)  # MiniLM ships no MLM head: its head is freshly initialised (seeded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_teacher(minilm_dir, require_mlm_head=False)


@pytest.fixture(scope="module")
def rxnfp(rxnfp_dir):
    return load_teacher(rxnfp_dir)


def test_layer_indices_match_the_reference_rule():
    assert student_layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    for total in range(1, 25):
        for n in range(1, total + 1):
            got = student_layer_indices(total, n)
            exact = np.linspace(0, total - 1, n)
            if not np.any(np.isclose(exact % 1, 0.5)):  # numpy rounds halves to even; no tie here
                assert got == np.round(exact).astype(int).tolist()
            assert got[0] == 0 and len(set(got)) == n and (n == 1 or got[-1] == total - 1)
    with pytest.raises(ValueError, match="n_layers"):
        student_layer_indices(6, 7)


def test_all_layers_kept_reproduces_teacher_logits_minilm(minilm, tokenizer_json, english_lines):
    student = init_student(minilm, n_layers=minilm.config.num_hidden_layers)
    assert isinstance(student, DistilBertForMaskedLM)
    ids, mask = english_batch(tokenizer_json, english_lines)
    assert max_logit_diff(minilm, student, ids, mask) < 1e-4


def test_all_layers_kept_reproduces_teacher_logits_rxnfp(rxnfp):
    # rxnfp has a trained MLM head; its vocabulary is reaction-SMILES tokens (no such text ships
    # in any package we use), so the input is drawn from its vocabulary.
    student = init_student(rxnfp, layers=list(range(12)))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, rxnfp.config.vocab_size, (4, 40), generator=g)
    ids[:, 0], mask = 12, torch.ones_like(ids)  # [CLS] of the rxnfp vocabulary
    mask[2, 25:] = 0
    assert max_logit_diff(rxnfp, student, ids, mask) < 1e-4


def test_same_class_option_gives_a_shallower_bert(minilm, rxnfp, tokenizer_json, english_lines):
    full = init_student(minilm, n_layers=6, student_class="same")
    assert type(full) is BertForMaskedLM and full.config.num_hidden_layers == 6
    ids, mask = english_batch(tokenizer_json, english_lines)
    assert max_logit_diff(minilm, full, ids, mask) < 1e-4
    half = init_student(rxnfp, n_layers=6, student_class="same")  # trained MLM head
    assert type(half) is BertForMaskedLM and half.config.num_hidden_layers == 6
    for s_layer, t_index in zip(half.bert.encoder.layer, [0, 2, 4, 7, 9, 11]):
        assert torch.equal(s_layer.attention.self.query.weight, rxnfp.bert.encoder.layer[t_index].attention.self.query.weight)
    assert torch.equal(half.cls.predictions.transform.dense.weight, rxnfp.cls.predictions.transform.dense.weight)


def test_half_depth_copies_the_chosen_layers(rxnfp):
    student = init_student(rxnfp, n_layers=6).eval()
    assert student.config.n_layers == 6
    assert student.config.distilx_teacher_layers == [0, 2, 4, 7, 9, 11]
    for s_layer, t_index in zip(student.distilbert.transformer.layer, [0, 2, 4, 7, 9, 11]):
        t_layer = rxnfp.bert.encoder.layer[t_index]
        assert torch.equal(s_layer.attention.q_lin.weight, t_layer.attention.self.query.weight)
        assert torch.equal(s_layer.ffn.lin2.bias, t_layer.output.dense.bias)
        assert torch.equal(s_layer.output_layer_norm.weight, t_layer.output.LayerNorm.weight)
    # the folded token-type row keeps the embedding output identical
    ids = torch.randint(5, 591, (2, 16))
    with torch.no_grad():
        t_emb = rxnfp.bert.embeddings(input_ids=ids)
        s_emb = student.distilbert.embeddings(ids)
    assert (t_emb - s_emb).abs().max() < 1e-5
    # fewer parameters than the teacher, same vocabulary
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in rxnfp.parameters())


def test_tying_follows_the_teacher(minilm, tokenizer_json, english_lines):
    student = init_student(minilm, n_layers=3)
    assert student.vocab_projector.weight is student.distilbert.embeddings.word_embeddings.weight
    # an untied teacher (decoder differs from the embeddings) gives an untied student with its decoder
    untied = BertForMaskedLM(BertConfig(**{**minilm.config.to_dict(), "tie_word_embeddings": False}))
    untied.load_state_dict(minilm.state_dict(), strict=False)
    with torch.no_grad():
        untied.cls.predictions.decoder.weight.copy_(minilm.bert.embeddings.word_embeddings.weight * 0.5 + 0.01)
    assert not torch.equal(untied.cls.predictions.decoder.weight, untied.bert.embeddings.word_embeddings.weight)
    student = init_student(untied, n_layers=6)
    assert not student.config.tie_word_embeddings
    assert student.vocab_projector.weight is not student.distilbert.embeddings.word_embeddings.weight
    ids, mask = english_batch(tokenizer_json, english_lines)
    assert max_logit_diff(untied, student, ids, mask) < 1e-4


def test_save_pretrained_round_trip(minilm, tmp_path, tokenizer_json, english_lines):
    student = init_student(minilm, n_layers=2)
    student.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert isinstance(loaded, DistilBertForMaskedLM)
    ids, mask = english_batch(tokenizer_json, english_lines, n=3)
    assert max_logit_diff(student, loaded, ids, mask) == 0.0


def test_roberta_teacher_gives_roberta_student():
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=80)
    teacher = RobertaForMaskedLM(cfg).eval()
    student = init_student(teacher, n_layers=2)
    assert isinstance(student, RobertaForMaskedLM) and student.config.num_hidden_layers == 2
    assert torch.equal(student.roberta.encoder.layer[1].output.dense.weight,
                       teacher.roberta.encoder.layer[3].output.dense.weight)
    full = init_student(teacher, n_layers=4)
    ids = torch.randint(3, 300, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0
    assert max_logit_diff(teacher, full, ids, mask) < 1e-5


def test_unsupported_teacher_and_bad_layers_raise(rxnfp):
    from transformers import AlbertConfig, AlbertForMaskedLM

    albert = AlbertForMaskedLM(AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=48))
    with pytest.raises(TypeError, match=r"model types \['bert', .*'roberta'"):
        init_student(albert)  # one layer shared across depth: no stack of layers to keep
    shallower = init_student(init_student(rxnfp, n_layers=4), n_layers=2)  # a DistilBERT teacher: shallower DistilBERT
    assert isinstance(shallower, DistilBertForMaskedLM) and shallower.config.n_layers == 2
    with pytest.raises(ValueError, match="student_class"):
        init_student(rxnfp, student_class="distilroberta")
    with pytest.raises(ValueError, match="layers"):
        init_student(rxnfp, layers=[0, 12])
    with pytest.raises(ValueError, match="disagrees"):
        init_student(rxnfp, n_layers=3, layers=[0, 1])
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher("/nonexistent/teacher")


def test_vocab_mismatch_is_a_clear_error(rxnfp, minilm, tokenizer_json, rxnfp_dir):
    from distilx import Tokenizer

    english = Tokenizer(str(tokenizer_json))
    with pytest.raises(ValueError, match="tokenizer vocabulary"):
        check_vocab(rxnfp, english)  # 30522-id tokenizer vs a 591-id model
    check_vocab(minilm, english)  # the teacher's own tokenizer passes
    check_vocab(rxnfp, Tokenizer(str(rxnfp_dir / "vocab.txt")))
