"""Error types of bayes_se.

Every problem with what a user hands us (a data file, a model spec, a prior string) is raised as a
:class:`BayesSEError` subclass whose message names the place: the row and column of a table, the key
of a spec, the text of a prior. The CLI prints the message as one line and exits with status 2.
"""

from __future__ import annotations


class BayesSEError(ValueError):
    """Base class of every error bayes_se raises on bad input."""


class DataError(BayesSEError):
    """A problem in an effect-size table or correlation table.

    Parameters
    ----------
    message : str
        What is wrong.
    row : int or str, optional
        The row (1-based data row as a user sees it in a spreadsheet, or the study label).
    column : str, optional
        The column name.
    """

    def __init__(self, message: str, *, row=None, column: str | None = None):
        self.row = row
        self.column = column
        self.message = message
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)

    def renumbered(self, row) -> "DataError":
        """The same error naming another row (e.g. the file's row number of a table row)."""
        return DataError(self.message, row=row, column=self.column)


class SpecError(BayesSEError):
    """A problem in a model specification (TOML) or a prior string."""

    def __init__(self, message: str, *, key: str | None = None):
        self.key = key
        super().__init__((f"spec key '{key}': " if key else "") + message)


class ConvergenceWarning(UserWarning):
    """An iterative estimator or a sampler did not meet its convergence checks."""


class DataWarning(UserWarning):
    """Something in the data worth a look that still reads or fits: a fallback encoding, skipped
    rows, rows left out of a model (e.g. for a missing moderator; the message names them). The CLI
    prints it as one ``bayes-se: warning:`` line."""


class MethodWarning(UserWarning):
    """A method option that the package's own calibration studies found biased or miscalibrated
    (the message says how, and where the study is documented); kept for comparison only."""


class PriorScaleWarning(UserWarning):
    """The effects sit far outside the scale the priors on mu and tau allow (a prior-data conflict:
    the prior, not the data, then decides the estimates)."""
