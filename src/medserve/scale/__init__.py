"""Work spread over Ray: batch scoring on Ray Data, training's folds and families as Ray
tasks, and the one place a command joins or starts a Ray cluster (``cluster``). Nothing
here is imported unless a command asks for ``--engine ray``; Ray is the extra
``medserve[ray]``."""
