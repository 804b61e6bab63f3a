"""Person search as a tool: index a folder of person images with a trained model, query it in plain English,
see which body region each noun phrase of the query matched (README, Person search).

The Python API is acsa.search.api:

    from acsa.search.api import SearchIndex, build_index
    build_index("models/main", "my_index", images="photos/")
    index = SearchIndex.open("my_index")
    for result in index.search("a woman in a red coat carrying a black backpack", top_k=5).results:
        print(result.path, result.fused)

Modules: api (the above), index (build and update an index), query (SearchIndex, search), store (the
on-disk format), scan (which files), global_search (exact or FAISS), model_access (everything asked of the
model), server (the web app; `acsa serve`). The `acsa` command is acsa/__main__.py.
"""
