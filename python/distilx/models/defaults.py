"""init_student's choices, importable without torch (TrainConfig validates against them)."""

#: init_student's student_class: "auto", the table's builder (BERT -> DistilBERT, the recipe; others:
#: their own class), or "same", the teacher's own class for every architecture (BERT -> shallower BERT)
STUDENT_CLASSES = ("auto", "same")
