"""Person search as a tool: index a folder of person images with a trained model, query it in plain English,
see which body region each noun phrase of the query matched (README, Person search).

    from acsa.search import SearchIndex, build_index
    build_index("models/main", "my_index", images="photos/")
    index = SearchIndex.open("my_index")
    for result in index.search("a woman in a red coat carrying a black backpack", top_k=5).results:
        print(result.path, result.fused)

Modules: index (build and update an index), query (SearchIndex, search), store (the on-disk format),
scan (which files), global_search (exact or FAISS), model_access (everything asked of the model),
server (the web app).
"""

from acsa.search.errors import SearchError
from acsa.search.index import IndexReport, build_index
from acsa.search.query import Result, SearchIndex, SearchResponse, search

__all__ = ["IndexReport", "Result", "SearchError", "SearchIndex", "SearchResponse", "build_index", "search"]
