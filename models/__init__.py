"""kneegrade model toolkit: PIM networks for Kellgren-Lawrence grading (train, evaluate, export)."""

LABELS = ["KL0", "KL1", "KL2", "KL3", "KL4"]
NUM_CLASSES = len(LABELS)
