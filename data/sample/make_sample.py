"""Cut the shipped sample corpus out of the full shards (needs only pyarrow).

    python make_sample.py SHARED_CORPUS_DIR

SHARED_CORPUS_DIR is the folder described in SOURCES.md (wikipedia/ and books/
shards). Writes wikipedia/train-00000-of-00001.parquet and
books/train-00000-of-00001.parquet next to this script; the `huggingface`
schema metadata of the originals is kept.
"""
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

src = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))

wiki = pq.read_table(os.path.join(src, "wikipedia/train-00000-of-00003.parquet"))
# The first 300 articles shorter than 6,000 characters: many articles, small file.
keep = [i for i, t in enumerate(wiki.column("text").to_pylist()) if len(t) < 6000][:300]
pq.write_table(wiki.take(pa.array(keep)), os.path.join(here, "wikipedia/train-00000-of-00001.parquet"),
               row_group_size=100, compression="snappy")

books = pq.read_table(os.path.join(src, "books/train-00000-of-00003.parquet"))
pq.write_table(books.slice(0, 6000), os.path.join(here, "books/train-00000-of-00001.parquet"),
               row_group_size=2000, compression="snappy")
