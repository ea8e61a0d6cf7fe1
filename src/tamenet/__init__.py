"""tamenet: train neural networks that generalize, comparing regularizers at population speed."""

__version__ = "0.1.0"

from .api import TrainResult, fit  # noqa: E402
from .config import Recipe, RecipeError  # noqa: E402
from .gradcheck import gradient_check  # noqa: E402
from .recipes import DEFAULT_RECIPE, load_recipe  # noqa: E402
from .select import cross_validate, search  # noqa: E402
from .trained import evaluate_run, load_run  # noqa: E402

__all__ = [
    "DEFAULT_RECIPE",
    "Recipe",
    "RecipeError",
    "TrainResult",
    "__version__",
    "cross_validate",
    "evaluate_run",
    "fit",
    "gradient_check",
    "load_recipe",
    "load_run",
    "search",
]
