"""Training: the loop and its Hook base (loop.py), the hooks (hooks.py, metrics.py, budget.py),
the optimiser, schedule and precision (optim.py, amp.py), fine-tuning from a detector
(finetune.py), resuming (resume.py), and a Trainer assembled from a run's options (build.py)."""
