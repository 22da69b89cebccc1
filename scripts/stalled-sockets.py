#!/usr/bin/env python3
# The operator's latency with no stalled sockets open, then with 272: 256
# that declare a body they never send (to the API, an admin endpoint and a
# web trigger, without a token) and 16 whose request head never ends.
# Against a build of assets-host serve (BENCHMARKS.md quotes a release one):
#   scripts/stalled-sockets.py target/release/assets-host COMPONENT.wasm
import socket, subprocess, sys, time, statistics, http.client, os, tempfile
binary, component = sys.argv[1], sys.argv[2]
def start():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    db = tempfile.mktemp(suffix=".db")
    p = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}", "--db", db, "--clock", "virtual",
                          "--token", "t0ken", "--app", f"demo={component}"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ws = src = None
    for line in p.stdout:
        if "workspace" in line and ws is None: ws = line.split()[-1]
        if "importSourceId" in line: src = line.split()[-1]
        if line.startswith("ready"): break
    return p, port, ws, src
def timed(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t = time.perf_counter()
    c.request("GET", path, headers={"authorization": "Bearer t0ken"})
    r = c.getresponse(); r.read(); c.close()
    return r.status, (time.perf_counter() - t) * 1000
def stall(port, head):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(head.encode()); return s
p, port, ws, src = start()
api = f"/jsm/assets/workspace/{ws}/v1/importsource/{src}"
paths = ["/_admin/apps", api + "/history"]
def sample(n=60):
    out = []
    for k in range(n):
        st, ms = timed(port, paths[k % 2]); assert st == 200, st; out.append(ms)
    return out
quiet = sample()
forged = "POST /apps/demo/webtrigger HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\nx-assets-timestamp: 1\r\nx-assets-signature: sha256=" + "ab"*32 + "\r\n\r\n"
held = []
for k in range(256):
    m = k % 16
    if m <= 7: head = f"POST {api}/executions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
    elif m <= 14: head = "POST /_admin/importsource HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
    else: head = forged
    held.append(stall(port, head))
held += [stall(port, "GET /_admin/apps HTTP/1.1\r\nhost: x\r\n") for _ in range(16)]
time.sleep(0.3)
loaded = sample()
p.terminate(); p.wait()
for name, xs in (("no stalled sockets", quiet), ("272 stalled sockets", loaded)):
    xs = sorted(xs)
    print(f"{name}: n={len(xs)} min={xs[0]:.2f} ms median={statistics.median(xs):.2f} ms max={xs[-1]:.2f} ms")
