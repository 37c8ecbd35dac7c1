"""What training and inference share below them: a run's checkpoint files (checkpoint.py) and
its process world (distributed.py)."""
