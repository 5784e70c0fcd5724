"""Display names of the models and datasets that runs point to, fetched once per page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.models import User
from app.core.repositories import catalog


@dataclass
class CatalogNames:
    """Names by id; a missing id shows as its number."""

    models: dict[int, str]
    datasets: dict[int, str]

    def model(self, model_id: int) -> str:
        """The base model's name."""
        return self.models.get(model_id, f"model {model_id}")

    def dataset(self, dataset_id: int) -> str:
        """The dataset's name."""
        return self.datasets.get(dataset_id, f"dataset {dataset_id}")


def catalog_names(session: Session, user: User) -> CatalogNames:
    """Every model name and the names of the datasets user may see (the catalog is small next to the runs)."""
    return CatalogNames({m.id: m.name for m in catalog.list_models(session)},
                        {d.id: d.name for d in catalog.list_datasets(session, user)})
