// Evaluated in the served page by tests/test_browser.py (CDP Runtime.evaluate,
// awaitPromise). Opens the browser's own WebSocket to the echo route of
// `serve demo` and checks that every message comes back unchanged, in order
// and with its type: text with non-ASCII characters, binary with every byte
// value, and sizes that take each RFC 6455 length form (7-bit, 16-bit,
// 64-bit). Resolves to a JSON summary; rejects with the first mismatch.
(async () => {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let waiting = null;
  let closed = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (waiting) { const w = waiting; waiting = null; w(); } };
  ws.onclose = (e) => { closed = { code: e.code, reason: e.reason, clean: e.wasClean };
                        if (waiting) { const w = waiting; waiting = null; w(); } };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("echo socket failed to open")); });

  const next = async () => {
    while (!inbox.length) {
      if (closed) throw new Error("echo socket closed early: " + JSON.stringify(closed));
      await new Promise((r) => { waiting = r; });
    }
    return inbox.shift();
  };
  const bytes = (n) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 255; return b; };
  const sameBytes = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

  const texts = ["h\u00e9llo \u2713 \ud83d\ude80", "x".repeat(125), "y".repeat(126), "z\u00e9".repeat(40000)];
  const sizes = [0, 1, 125, 126, 65535, 65536, 200000];
  for (const t of texts) ws.send(t);                 // pipelined: no wait between sends
  for (const n of sizes) ws.send(bytes(n));
  for (const t of texts) {
    const got = await next();
    if (typeof got !== "string" || got !== t) throw new Error("text echo mismatch at length " + t.length);
  }
  for (const n of sizes) {
    const got = await next();
    if (!(got instanceof ArrayBuffer) || !sameBytes(new Uint8Array(got), bytes(n)))
      throw new Error("binary echo mismatch at size " + n);
  }
  ws.close(1000, "done");
  while (!closed) await new Promise((r) => { waiting = r; });
  return JSON.stringify({ texts: texts.length, binaries: sizes.length, close: closed });
})()
