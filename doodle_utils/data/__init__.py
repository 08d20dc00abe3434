"""The data layer: Quick, Draw! files in and out, Google's simplification, the packed store,
the synthetic competition.

* :mod:`.drawings` — the file formats (Kaggle CSV, Google ndjson) read in streaming chunks
  into :class:`Drawings` and written back; its public names are importable from here too,
  as they were from ``doodle_utils.data`` before the layers became subpackages.
* :mod:`.simplify` — Google's simplification (Ramer-Douglas-Peucker on the 0..255 frame).
* :mod:`.store` — the packed, memory-mapped store every later layer reads.
* :mod:`.synth` — the embedded synthetic competition in Kaggle's exact file set.

Nothing here imports a higher layer (render, models, training, postprocess).
"""
from .drawings import (META_COLUMNS, MAX_ROW_BYTES, NDJSON_FIELDS, ROW_REASONS, TEST_COLUMNS, TRAIN_COLUMNS,
                       Chunk, DataError, Drawings, SkipReport, has_times, iter_csv, iter_file, iter_ndjson,
                       parse_drawing_column, parse_drawing_strings, parse_timestamps, read_file, write_csv,
                       write_ndjson, write_ndjson_chunks)

__all__ = ["META_COLUMNS", "MAX_ROW_BYTES", "NDJSON_FIELDS", "ROW_REASONS", "TEST_COLUMNS", "TRAIN_COLUMNS",
           "Chunk", "DataError", "Drawings", "SkipReport", "has_times", "iter_csv", "iter_file", "iter_ndjson",
           "parse_drawing_column", "parse_drawing_strings", "parse_timestamps", "read_file", "write_csv",
           "write_ndjson", "write_ndjson_chunks"]
