"""The runtime as an HTTP service.

- `service.py`: ServeConfig (every limit and default, declared once) and Stylizer: one loaded
  Engine, the style bank, request decoding with limits, batches of jobs, metrics. No web
  framework in it.
- `bank.py`: the style bank, a folder of StyleCode JSON files with each style's image beside
  (persisted, shareable).
- `app.py`: the FastAPI app over a Stylizer: endpoints, limits, errors as HTTP answers. Runs
  under uvicorn, mounts into another ASGI app, or sits behind Ray Serve.
- `page/`: the page the app serves at / to try it in a browser (HTML, CSS, JavaScript; package
  data, nothing fetched from elsewhere), a client of the public API only.
- `ray_app.py`: the Ray Serve deployment of that app; batching by `@serve.batch`.
- `cli.py`: `stylert serve`.
- `netns.py`: loopback-only network namespaces for tests and the load test.

The load test that drives it is `stylert loadtest` (bench/loadtest.py).
"""
