"""The student's choices, importable without torch (TrainConfig validates against them)."""

#: init_student's student_class: "auto", the table's builder (BERT -> DistilBERT, the recipe; others:
#: their own class), or "same", the teacher's own class for every architecture (BERT -> shallower BERT)
STUDENT_CLASSES = ("auto", "same")
#: student_init: copy the kept teacher layers whole (the teacher's width only), fresh weights, or a
#: sub-network of the teacher (models/weight_selection.py)
STUDENT_INITS = ("teacher", "random", "weight-selection")
#: weight selection's choice of units: evenly spaced, or the largest by weight norm
SELECTIONS = ("uniform", "importance")
#: the learned-projection hidden-state term (tasks/width_terms.py)
HIDDEN_LOSSES = ("mse", "cosine")
