"""What training needs installed, checked before any work: one line naming the extra to install,
not an ImportError's traceback from deep in a launch (a Ray worker built from the pipeline image,
a `pip install 'crawlmill[pipeline]'` without the train extra).

    from crawlmill.training.packages import require_training_packages
    require_training_packages("crawlmill train")   # MissingTrainingPackages (a ValueError): exit status 2
"""

from __future__ import annotations

import importlib


class MissingTrainingPackages(ValueError):
    """Megatron-Core (or torch) cannot be imported where training was asked to run."""


def require_training_packages(what: str) -> None:
    """Raise MissingTrainingPackages, naming `what` needs them and how to install them, when torch
    or megatron.core does not import in this Python."""
    for module in ("torch", "megatron.core"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingTrainingPackages(
                f"{what} needs {module.split('.')[0]}{'-core' if module == 'megatron.core' else ''}, which this Python "
                f"cannot import ({exc}): install crawlmill's train extra here (pip install -e '.[train]' from the "
                "repository; scripts/install.sh installs it). In a Ray cluster every node that trains needs it: "
                "docker/train-gpu.Dockerfile's image has it, docker/ray-worker.Dockerfile's (the pipeline's) has not"
            ) from None
