"""Person search as a tool: index a folder of person images with a trained model, query it in plain English,
see which body region each noun phrase of the query matched (README, Person search).

The Python API is acsa.search.api:

    from acsa.search.api import SearchIndex, build_index
    build_index("models/main", "my_index", images="photos/")
    index = SearchIndex.open("my_index")
    for result in index.search("a woman in a red coat carrying a black backpack", top_k=5).results:
        print(result.path, result.fused)

Modules: api (the above), index (build and update an index), query (SearchIndex, search), opened (an index
as opened, reopened when it changes), store (the on-disk format), manifest_check (the manifest's schema),
scan (which files), names (file names shown and served), global_search (exact or FAISS), model_access
(everything asked of the model), query_text (a query's text through the frozen encoder: packed_text, one
forward; onnx_text, ONNX Runtime), server and serving (the web app, its sockets and Host check;
`acsa serve`). The `acsa` command is acsa/__main__.py.
"""
