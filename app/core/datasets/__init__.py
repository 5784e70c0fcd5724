"""Dataset ingestion: sniff an upload's file type, detect its format, validate every row, emit canonical rows."""

from app.core.datasets.canonical_file import CanonicalWriter
from app.core.datasets.file_types import FILE_TYPES, FileType
from app.core.datasets.formats import FORMATS, Format
from app.core.datasets.inspection import InspectedDataset, inspect_dataset, iter_canonical, write_canonical_jsonl
from app.core.datasets.limits import DEFAULT_LIMITS, Limits
from app.core.datasets.problems import DatasetProblem

__all__ = [
    "CanonicalWriter",
    "DEFAULT_LIMITS",
    "FILE_TYPES",
    "FORMATS",
    "DatasetProblem",
    "FileType",
    "Format",
    "InspectedDataset",
    "Limits",
    "inspect_dataset",
    "iter_canonical",
    "write_canonical_jsonl",
]
