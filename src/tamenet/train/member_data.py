"""The rows each member trains and validates on: one pool, standardized copies per fold, index sets per member.

A holdout run has one copy and one index set shared by all members; cross-validation gives member m
the copy of its fold (scaled on that fold's training part only) and its fold's rows. Every member
trains on the same number of rows, so a batch is one dense [M, B] gather and member m's batches are
exactly those of a single run on its fold; validation sets may differ in size (padded, weighted).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import SplitData


@dataclass(eq=False)
class MemberData:
    """X [K, N, F] and y [K, N]: K scaled copies of the pool; member m uses copy fold[m].

    train [M, n] (or [1, n] shared): the rows member m trains on, all members the same count n.
    val [M, V] with val_weight [M, V] (1 = a row, 0 = padding): the rows that decide early stopping.
    target_std [M]: the regression target's scale per member (RMSE in original units), else ones.
    """

    task: str
    X: torch.Tensor
    y: torch.Tensor
    fold: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    val_weight: torch.Tensor | None
    target_std: torch.Tensor
    train_is_prefix: bool = False  # train[0] == arange(n): positions are rows (saves a gather per step)

    @property
    def n_train(self) -> int:
        return self.train.shape[1]

    @property
    def members(self) -> int:
        return len(self.fold)

    @property
    def shared(self) -> bool:
        """One copy and one set of training rows for everyone: batches can be shared."""
        return self.X.shape[0] == 1 and self.train.shape[0] == 1

    @property
    def has_val(self) -> bool:
        return self.val.shape[1] > 0

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets at `positions` into each member's training rows: [n_b] shared or [M, n_b]."""
        if self.shared:
            rows = positions if self.train_is_prefix else self.train[0][positions]
            return self.X[0][rows], self.y[0][rows]
        if positions.dim() == 1:
            positions = positions.unsqueeze(0).expand(self.members, -1)
        rows = torch.gather(self.train.expand(self.members, -1), 1, positions)
        copy = self.fold.unsqueeze(1)
        return self.X[copy, rows], self.y[copy, rows]

    def validation(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(X, y, weight): shared [V, F] / [V] when every member validates on the same rows, else [M, V, ...]."""
        if self.X.shape[0] == 1 and self.val.shape[0] == 1 and self.val_weight is None:
            rows = self.val[0]
            return self.X[0][rows], self.y[0][rows], None
        val = self.val.expand(self.members, -1)
        copy = self.fold.unsqueeze(1)
        return self.X[copy, val], self.y[copy, val], self.val_weight

    def to(self, device: torch.device | str) -> "MemberData":
        """The same rows with every tensor on `device` (itself when they are there already)."""
        device = torch.device(device)
        if self.X.device == device:
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return MemberData(self.task, move(self.X), move(self.y), move(self.fold), move(self.train), move(self.val),
                          move(self.val_weight), move(self.target_std), self.train_is_prefix)

    def keep(self, members: torch.Tensor) -> "MemberData":
        """The rows of these members only."""
        def rows(t: torch.Tensor | None) -> torch.Tensor | None:
            return t if t is None or t.shape[0] == 1 else t[members]

        return MemberData(self.task, self.X, self.y, self.fold[members], rows(self.train), rows(self.val),
                          rows(self.val_weight), self.target_std[members], self.train_is_prefix)

    @classmethod
    def from_split(cls, data: SplitData, members: int) -> "MemberData":
        """The holdout case: train and validation splits shared by all members."""
        n_train, n_val = len(data.X_train), len(data.X_val)
        return cls(
            task=data.task,
            X=torch.cat([data.X_train, data.X_val]).unsqueeze(0),
            y=torch.cat([data.y_train, data.y_val]).unsqueeze(0),
            fold=torch.zeros(members, dtype=torch.long),
            train=torch.arange(n_train).unsqueeze(0),
            val=torch.arange(n_train, n_train + n_val).unsqueeze(0),
            val_weight=None,
            target_std=torch.full((members,), data.target_std, dtype=torch.float64),
            train_is_prefix=True,
        )
