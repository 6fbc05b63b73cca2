"""`params_without_embeddings` means one thing wherever it is written (nas/deploy/costs.py)."""

from nas.deploy.costs import parameter_counts, student_costs
from searchspace.genotype import Genotype
from searchspace.student import compile_genotype

GENOTYPE = Genotype(num_cells=2, hidden_size=16, cell=[[("cnn3", 0), ("max_pool", 1)],
                                                       [("dilated_cnn5", 2), ("identity", 0)],
                                                       [("cnn7", 3), ("avg_pool", 2)]])
VOCAB, POSITIONS = 50, 32


def test_it_leaves_out_the_token_table_and_nothing_else():
    student = compile_genotype(GENOTYPE, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=False)
    counts = parameter_counts(student)
    assert counts["params"] == sum(p.numel() for p in student.parameters())
    assert counts["params"] - counts["params_without_embeddings"] == VOCAB * GENOTYPE.hidden_size
    # Position table and embedding norm are counted with the network.
    rest = counts["params_without_embeddings"]
    assert rest >= POSITIONS * GENOTYPE.hidden_size + 2 * GENOTYPE.hidden_size


def test_arch_json_costs_equal_the_counts_of_the_compiled_student():
    costs = student_costs(GENOTYPE, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=False, seq_len=16)
    student = compile_genotype(GENOTYPE, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=False)
    assert {k: costs[k] for k in ("params", "params_without_embeddings")} == parameter_counts(student)


def test_a_hugging_face_teacher_gets_the_same_meaning():
    from transformers import BertConfig, BertForSequenceClassification

    teacher = BertForSequenceClassification(BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=16))
    counts = parameter_counts(teacher)
    assert counts["params"] - counts["params_without_embeddings"] == VOCAB * 8
