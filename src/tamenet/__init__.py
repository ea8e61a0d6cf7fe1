"""tamenet: train neural networks that generalize, comparing regularizers at population speed."""

__version__ = "0.1.0"

from .api import TrainResult, fit  # noqa: E402
from .config import Recipe, RecipeError  # noqa: E402
from .recipes import DEFAULT_RECIPE, load_recipe  # noqa: E402

__all__ = ["DEFAULT_RECIPE", "Recipe", "RecipeError", "TrainResult", "__version__", "fit", "load_recipe"]
