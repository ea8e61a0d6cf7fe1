"""tamenet: train neural networks that generalize, comparing regularizers at population speed.

The names below are imported on first use (PEP 562), so `import tamenet` itself loads neither
torch nor the libraries only training and model selection need (Optuna, scikit-learn, matplotlib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .blas import use_strict_gemm
from .lazy import lazy_attributes

use_strict_gemm()  # before the process's first matrix product: member m's products then do not depend on the population

__version__ = "0.1.0"

EXPORTS: dict[str, str] = {
    "CheckpointError": "checkpoints",
    "DEFAULT_RECIPE": "recipes",
    "Recipe": "config",
    "RecipeError": "config",
    "TrainResult": "api",
    "cross_validate": "select.run",
    "evaluate_run": "trained",
    "fit": "api",
    "gradient_check": "gradcheck",
    "load_recipe": "recipes",
    "load_run": "trained",
    "search": "select.run",
}
"""Public name -> the module of the package that defines it (imported when the name is first used)."""

__all__ = sorted(["__version__", *EXPORTS])

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports these
    from .api import TrainResult, fit  # noqa: F401
    from .checkpoints import CheckpointError  # noqa: F401
    from .config import Recipe, RecipeError  # noqa: F401
    from .gradcheck import gradient_check  # noqa: F401
    from .recipes import DEFAULT_RECIPE, load_recipe  # noqa: F401
    from .select import cross_validate, search  # noqa: F401
    from .trained import evaluate_run, load_run  # noqa: F401


__getattr__, __dir__ = lazy_attributes(__name__, EXPORTS, globals())
