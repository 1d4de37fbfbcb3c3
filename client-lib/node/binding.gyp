{
  "targets": [
    {
      "target_name": "saga_node",
      "sources": ["src/addon.c", "src/client.c", "src/worker.c"],
      "cflags": ["<!@(pkg-config --cflags libsaga)", "-std=gnu11", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["<!@(pkg-config --libs libsaga)", "-lpthread"],
      "ldflags": ["-Wl,-rpath,<!(pkg-config --variable=libdir libsaga)"]
    }
  ]
}
