"""All ORM models, imported here so metadata is complete for Alembic and tests."""

from app.core.models.analysis import DatasetAnalysis
from app.core.models.audit import AuditEntry
from app.core.models.base_model import BaseModelEntry
from app.core.models.blob import Blob, BlobChunk
from app.core.models.dataset import Dataset
from app.core.models.evaluation import Evaluation, EvaluationExample
from app.core.models.exports import AdapterExport, AdapterExportFile
from app.core.models.metric import MetricPoint
from app.core.models.registry import AdapterAlias, AdapterVersion, AdapterVersionFile, RegisteredAdapter
from app.core.models.run import Artifact, Run, RunStatus
from app.core.models.sample import GenerationSample
from app.core.models.timeline_entry import TimelineEntry
from app.core.models.user import ApiToken, User, WebSession

__all__ = [
    "AdapterAlias", "AdapterExport", "AdapterExportFile", "AdapterVersion", "AdapterVersionFile", "RegisteredAdapter",
    "ApiToken", "Artifact", "AuditEntry", "BaseModelEntry", "Blob", "BlobChunk", "Dataset", "DatasetAnalysis",
    "Evaluation", "EvaluationExample",
    "GenerationSample", "MetricPoint", "Run", "TimelineEntry", "RunStatus", "User", "WebSession",
]
